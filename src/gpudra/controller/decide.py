"""Decide what to do with one group of gated pods (pure).

Outcomes (`GroupOutcome`):
* ``allocate`` - every claim of every pod gets an allocation (best placement, pods of a gang
  placed one after the other on nodes where they also fit as pods); nothing is written
  unless the whole group fits;
* ``ungate``   - all claims are already allocated (a previous pass wrote them and stopped
  before ungating): just remove the gates;
* ``rollback`` - some but not all claims are allocated (a crash mid-gang): release them so
  the group is decided again from scratch; a gated pod's claims are only ever allocated by
  the controller, so these are ours;
* ``wait``     - the group is not complete yet (gang members or generated claims missing);
* ``fail``     - it cannot be placed now (with the explanation) or is malformed;
* ``error``    - (the reconciler's) deciding or writing failed; retried next pass.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.config import allocation_config
from gpudra.allocation.engine import Allocator, Assignment
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import Claim, Device, InputError, parse_claim
from gpudra.api.claim import AllocationResult, claim_is_allocated
from gpudra.api.meta import namespace_of
from gpudra.controller.events import cut
from gpudra.controller.fit import NodeUsage, fit_problem, pod_requests
from gpudra.controller.groups import Group, claim_names, pod_key
from gpudra.kubetypes.tolerations import Toleration
from gpudra.resourceapi import MANAGED_TAINT_KEY

ClaimKey = tuple[str, str]  # namespace, name
MANAGED_TOLERATION = Toleration(MANAGED_TAINT_KEY, "Exists", "", "NoSchedule")
NOT_MANAGED = f"not controller-managed (no {MANAGED_TAINT_KEY} taint)"


def managed_only(dev: Device) -> str | None:
    """The controller allocates only devices the scheduler cannot (see resourceapi)."""
    return None if any(t.get("key") == MANAGED_TAINT_KEY for t in dev.taints) else NOT_MANAGED


def tolerate_managed(claim: Claim) -> Claim:
    """The claim as the controller allocates it: every request tolerates the managed taint."""
    requests = tuple(
        replace(
            cr,
            alternatives=tuple(
                replace(r, tolerations=(*r.tolerations, MANAGED_TOLERATION))
                for r in cr.alternatives
            ),
        )
        for cr in claim.requests
    )
    return replace(claim, requests=requests)


class GroupOutcome(enum.Enum):
    """What to do with a group (the values are the metrics' ``outcome`` labels)."""

    ALLOCATE = "allocate"
    UNGATE = "ungate"
    ROLLBACK = "rollback"
    WAIT = "wait"
    FAIL = "fail"
    ERROR = "error"

    @property
    def writes(self) -> bool:
        """Acting on it writes claims or pods, telling the pods (events, conditions) included:
        the leader fence is checked first."""
        return self is not GroupOutcome.ERROR

    @property
    def settles(self) -> bool:
        """The group stays as it is until its pods or the world change (not decided again
        on the same inputs)."""
        return self in (GroupOutcome.WAIT, GroupOutcome.FAIL)


@dataclass
class Decision:
    outcome: GroupOutcome
    message: str = ""
    allocations: dict[ClaimKey, AllocationResult] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # pod key -> node
    claims: list[ClaimKey] = field(default_factory=list)  # rollback targets


def _claims_of(
    group: Group, claims: dict[ClaimKey, dict[str, Any]]
) -> dict[str, list[ClaimKey]] | Decision:
    """Pod key -> its claim keys, or the wait or fail decision when some are missing."""
    out: dict[str, list[ClaimKey]] = {}
    for pod in group.pods:
        ns = namespace_of(pod)
        names, missing = claim_names(pod)
        if not names and not missing:
            return Decision(
                GroupOutcome.FAIL,
                f"pod {pod_key(pod)} carries the gpudra.io/topology gate but has no resource "
                "claims; remove the gate or add a claim",
            )
        if missing:
            return Decision(
                GroupOutcome.WAIT, f"waiting for the claims of pod {pod_key(pod)} to be created"
            )
        absent = [n for n in names if (ns, n) not in claims]
        if absent:
            return Decision(
                GroupOutcome.WAIT, f"waiting for claim(s) {', '.join(absent)} of pod {pod_key(pod)}"
            )
        out[pod_key(pod)] = [(ns, n) for n in names]
    return out


def decide(
    group: Group,
    *,
    claims: dict[ClaimKey, dict[str, Any]],
    view: ClusterView,
    nodes: dict[str, dict[str, Any]],
    pods_by_node: dict[str, list[dict[str, Any]]],
    timestamp: str,
    omit_all_requests: bool = True,
    usage: NodeUsage | None = None,
) -> Decision:
    """``omit_all_requests``: write device config as kube-scheduler 1.37+ does (see
    ``allocation.config``); False for older servers.  ``usage``: the pods' requests per node
    summed for the whole pass (one per pass; default: summed for this decision)."""
    if group.problem:
        return Decision(GroupOutcome.FAIL, group.problem)
    if not group.complete:
        have = len(group.pods) + group.released
        return Decision(
            GroupOutcome.WAIT, f"gang has {have} of {group.size} pods; waiting for the rest"
        )
    per_pod = _claims_of(group, claims)
    if isinstance(per_pod, Decision):
        return per_pod
    keys = [k for ks in per_pod.values() for k in ks]
    allocated = [k for k in keys if claim_is_allocated(claims[k])]
    if allocated and len(allocated) == len(keys):
        return Decision(GroupOutcome.UNGATE, "claims already allocated", claims=allocated)
    if allocated:
        return Decision(
            GroupOutcome.ROLLBACK,
            f"{len(allocated)} of {len(keys)} claims were allocated by an interrupted pass",
            claims=allocated,
        )
    return _allocate(
        group,
        per_pod=per_pod,
        claims=claims,
        view=view,
        nodes=nodes,
        usage=usage or NodeUsage(pods_by_node),
        timestamp=timestamp,
        omit_all_requests=omit_all_requests,
    )


def _allocate(
    group: Group,
    *,
    per_pod: dict[str, list[ClaimKey]],
    claims: dict[ClaimKey, dict[str, Any]],
    view: ClusterView,
    nodes: dict[str, dict[str, Any]],
    usage: NodeUsage,
    timestamp: str,
    omit_all_requests: bool,
) -> Decision:
    # the controller decides for itself: a selector failing on a node it need not search
    # does not fail the pod here, as it would in kube-scheduler
    allocator = Allocator(view, device_filter=managed_only, scheduler_errors=False)
    committed: list[Assignment] = []
    placed: dict[str, list[dict[str, Any]]] = {}
    decision = Decision(GroupOutcome.ALLOCATE)
    ok = False
    try:
        for pod in group.pods:
            key = pod_key(pod)
            try:
                parsed = [tolerate_managed(parse_claim(claims[k])) for k in per_pod[key]]
            except InputError as e:
                return Decision(GroupOutcome.FAIL, f"pod {key}: {e}")
            wants = pod_requests(pod)
            fitting = [
                name
                for name, node in nodes.items()
                if fit_problem(pod, node, placed.get(name, []), used=usage.of(name), requests=wants)
                is None
            ]
            if not fitting:
                return Decision(
                    GroupOutcome.FAIL, f"pod {key} fits no node (selectors, taints, capacity)"
                )
            try:
                outcome = allocator.allocate(parsed, fitting)
            except InputError as e:
                return Decision(GroupOutcome.FAIL, f"pod {key}: {e}")
            if outcome.best is None:
                prefix = f"gang {group.key}: " if group.size > 1 else ""
                text = prefix + explain(outcome, parsed, max_nodes=3)
                return Decision(GroupOutcome.FAIL, cut(text))
            allocator.commit(outcome.best)
            committed.append(outcome.best)
            placed.setdefault(outcome.best.node, []).append(pod)
            decision.nodes[key] = outcome.best.node
            for claim_key, claim in zip(per_pod[key], parsed, strict=True):
                alloc = outcome.best.allocation(claim, timestamp=timestamp)
                config = allocation_config(
                    claims[claim_key],
                    view.classes,
                    alloc["devices"]["results"],
                    omit_all=omit_all_requests,
                )
                if config:  # as kube-scheduler: the class's and the claim's device config
                    alloc["devices"]["config"] = config
                decision.allocations[claim_key] = alloc
        decision.message = ", ".join(f"{p} -> {n}" for p, n in decision.nodes.items())
        ok = True
        return decision
    finally:
        # on success the view keeps the group's devices in use (later groups of the same
        # pass must not get them); otherwise it is left as it was
        if not ok:
            for p in committed:
                allocator.release(p)
