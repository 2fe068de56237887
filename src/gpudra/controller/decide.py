"""Decide what to do with one group of gated pods (pure).

Outcomes:
* ``allocate`` - every claim of every pod gets an allocation (best placement, pods of a gang
  placed one after the other on nodes where they also fit as pods); nothing is written
  unless the whole group fits;
* ``ungate``   - all claims are already allocated (a previous pass wrote them and stopped
  before ungating): just remove the gates;
* ``rollback`` - some but not all claims are allocated (a crash mid-gang): release them so
  the group is decided again from scratch; a gated pod's claims are only ever allocated by
  the controller, so these are ours;
* ``wait``     - the group is not complete yet (gang members or generated claims missing);
* ``fail``     - it cannot be placed now (with the explanation) or is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.config import allocation_config
from gpudra.allocation.engine import Allocator, Placement
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import Claim, Device, InputError, Toleration, parse_claim
from gpudra.controller.fit import fit_problem
from gpudra.controller.groups import Group, claim_names, pod_key
from gpudra.resourceapi import MANAGED_TAINT_KEY

ClaimKey = tuple[str, str]  # namespace, name
MAX_EVENT_MESSAGE = 1024
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


@dataclass
class Decision:
    kind: str  # allocate | ungate | rollback | wait | fail
    message: str = ""
    allocations: dict[ClaimKey, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # pod key -> node
    claims: list[ClaimKey] = field(default_factory=list)  # rollback targets


def _claims_of(
    group: Group, claims: dict[ClaimKey, dict[str, Any]]
) -> tuple[dict[str, list[ClaimKey]], str, str]:
    """Pod key -> its claim keys; a wait reason; a failure reason."""
    out: dict[str, list[ClaimKey]] = {}
    for pod in group.pods:
        ns = pod["metadata"].get("namespace", "")
        names, missing = claim_names(pod)
        if not names and not missing:
            return (
                out,
                "",
                (
                    f"pod {pod_key(pod)} carries the gpudra.io/topology gate but has no resource "
                    "claims; remove the gate or add a claim"
                ),
            )
        if missing:
            return out, f"waiting for the claims of pod {pod_key(pod)} to be created", ""
        absent = [n for n in names if (ns, n) not in claims]
        if absent:
            return out, f"waiting for claim(s) {', '.join(absent)} of pod {pod_key(pod)}", ""
        out[pod_key(pod)] = [(ns, n) for n in names]
    return out, "", ""


def decide(
    group: Group,
    *,
    claims: dict[ClaimKey, dict[str, Any]],
    view: ClusterView,
    nodes: dict[str, dict[str, Any]],
    pods_by_node: dict[str, list[dict[str, Any]]],
    timestamp: str,
    omit_all_requests: bool = True,
) -> Decision:
    """``omit_all_requests``: write device config as kube-scheduler 1.37+ does (see
    ``allocation.config``); False for older servers."""
    if group.problem:
        return Decision("fail", group.problem)
    if not group.complete:
        have = len(group.pods) + group.released
        return Decision("wait", f"gang has {have} of {group.size} pods; waiting for the rest")
    per_pod, wait, fail = _claims_of(group, claims)
    if fail:
        return Decision("fail", fail)
    if wait:
        return Decision("wait", wait)
    keys = [k for ks in per_pod.values() for k in ks]
    allocated = [k for k in keys if (claims[k].get("status") or {}).get("allocation")]
    if allocated and len(allocated) == len(keys):
        return Decision("ungate", "claims already allocated", claims=allocated)
    if allocated:
        return Decision(
            "rollback",
            f"{len(allocated)} of {len(keys)} claims were allocated by an interrupted pass",
            claims=allocated,
        )
    return _allocate(
        group,
        per_pod=per_pod,
        claims=claims,
        view=view,
        nodes=nodes,
        pods_by_node=pods_by_node,
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
    pods_by_node: dict[str, list[dict[str, Any]]],
    timestamp: str,
    omit_all_requests: bool,
) -> Decision:
    allocator = Allocator(view, device_filter=managed_only)
    committed: list[Placement] = []
    placed: dict[str, list[dict[str, Any]]] = {}
    decision = Decision("allocate")
    ok = False
    try:
        for pod in group.pods:
            key = pod_key(pod)
            try:
                parsed = [tolerate_managed(parse_claim(claims[k])) for k in per_pod[key]]
            except InputError as e:
                return Decision("fail", f"pod {key}: {e}")
            fitting = [
                name
                for name, node in nodes.items()
                if fit_problem(pod, node, pods_by_node.get(name, []) + placed.get(name, [])) is None
            ]
            if not fitting:
                return Decision("fail", f"pod {key} fits no node (selectors, taints, capacity)")
            try:
                outcome = allocator.allocate(parsed, fitting)
            except InputError as e:
                return Decision("fail", f"pod {key}: {e}")
            if outcome.best is None:
                prefix = f"gang {group.key}: " if group.size > 1 else ""
                text = prefix + explain(outcome, parsed, max_nodes=3)
                return Decision("fail", text[:MAX_EVENT_MESSAGE])
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
