"""The controller's level-triggered loop: read everything, decide per group, write, repeat.

Every pass re-reads the API (pods, claims, slices, classes, nodes), so a restart at any
point converges: a group whose claims are all allocated is ungated, a partly allocated one
is rolled back and decided again.  Writes for one group: each claim's allocation (an
allocation is immutable, so a claim allocated meanwhile by someone else fails the write and
the group's other writes are rolled back), then the pods' gates.  Events and a pod
condition tell the user what happened; a failure in one group never stops the others.

This module is the pass: read, decide per group, apply each decision.  The writes
themselves (fenced, conditional, observed into the cache) are ``controller.writes``; what
the user is told, once, ``controller.telling``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.api.claim import (
    AllocationResult,
    allocation_results,
    claim_allocation,
    claim_reserved_for,
)
from gpudra.api.events import rfc3339
from gpudra.api.meta import (
    is_deleting,
    labels_of,
    name_of,
    namespace_of,
    namespaced_name,
    resource_version_of,
    uid_of,
)
from gpudra.api.node import node_allocatable, node_taints, node_unschedulable
from gpudra.api.pod import pod_node_name
from gpudra.common.errors import GpudraError
from gpudra.common.logfmt import bind
from gpudra.controller.cache import ClusterCache
from gpudra.controller.decide import ClaimKey, Decision, GroupOutcome, decide
from gpudra.controller.events import EventType
from gpudra.controller.fit import NodeUsage
from gpudra.controller.groups import Group, claim_names, group_pods, pod_key
from gpudra.controller.slim import slim_pod
from gpudra.controller.telling import Teller, pod_uid
from gpudra.controller.writes import Writes
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import Conflict, Invalid, KubeError, NotFound
from gpudra.kube.resources import (
    DEVICECLASSES,
    NODES,
    PODS,
    RESOURCECLAIMS,
    RESOURCESLICES,
)
from gpudra.metrics.controller import ControllerMetrics
from gpudra.resourceapi import DRIVER_NAME, MANAGED_TAINT_KEY

log = logging.getLogger(__name__)
# kube-scheduler writes a class's device config without ``requests`` when the class serves
# every request of the claim from this minor on (1.34 lists them; see allocation.config)
CONFIG_OMITS_ALL_FROM = 37


class NotLeader(GpudraError):
    """This replica may no longer write (its lease's renew deadline passed): the pass stops
    before its next write batch."""


def _ours(allocation: AllocationResult | None) -> bool:
    """Allocated by this controller: its results tolerate the controller-managed taint."""
    results = allocation_results(allocation)
    return bool(results) and all(
        any(t.get("key") == MANAGED_TAINT_KEY for t in r.get("tolerations") or []) for r in results
    )


def world_digest(
    slices: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    classes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
) -> str:
    """What every decision depends on beyond the group itself: slices, claims and classes
    (by resourceVersion), nodes as fit sees them (labels, taints, cordon, allocatable; not
    their heartbeats), and which pods run where."""
    h = hashlib.blake2b(digest_size=16)
    for objs in (slices, claims, classes):
        for o in sorted(f"{uid_of(x)}{resource_version_of(x)}" for x in objs):
            h.update(o.encode())
        h.update(b"|")
    for n in sorted(nodes, key=name_of):
        part = (name_of(n), labels_of(n), node_taints(n), node_unschedulable(n),
                node_allocatable(n))  # fmt: skip
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    for p in sorted(f"{pod_uid(p)}@{pod_node_name(p)}" for p in pods):
        h.update(p.encode())
    return h.hexdigest()


class Reconciler:
    def __init__(
        self,
        client: KubeClient,
        *,
        metrics: ControllerMetrics,
        clock: Callable[[], float] = time.time,
        unschedulable_deadline_s: float = 120.0,
        driver: str = DRIVER_NAME,
        cache: ClusterCache | None = None,
    ) -> None:
        self._client = client
        self._cache = cache
        self._driver = driver
        self._metrics = metrics
        self._clock = clock
        self._deadline = unschedulable_deadline_s
        # per pod UID (a pod recreated under the same name is a new pod), pruned every pass
        # to the pods that still exist
        self._ungated_at: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}
        self.teller = Teller(client, clock)
        self.writes = Writes(client, cache=cache)
        self._ignored: set[str] = set()  # reasons already logged for ignored slices
        # asked before every write batch (leader election sets it): a replica that is no
        # longer sure it leads must not write what it decided from its snapshot
        self.may_write: Callable[[], bool] = lambda: True
        self._minor: int | None = None
        # group key -> the inputs it last waited or failed on: such a group is decided again
        # only when its pods or the world it is decided against changed
        self._settled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def _server_minor(self) -> int:
        if self._minor is None:
            try:
                self._minor = self._client.server_version()[1]
            except KubeError as e:
                log.warning("cannot read the server version (%s); assuming the newest", e)
                return 1 << 10
        return self._minor

    def _fence(self) -> None:
        if not self.may_write():
            raise NotLeader("not leading any more; no further writes in this pass")

    def run_pass(self) -> dict[str, int]:
        """One reconcile pass over every gated group; returns counts per outcome (its
        value), plus ``unchanged``, ``released`` and ``rescued``."""
        pods, raw_claims, raw_nodes, slices, classes = self._read()
        self._forget_gone({uid_of(p) for p in pods})
        claims = {namespaced_name(x): x for x in raw_claims}
        nodes = {name_of(n): n for n in raw_nodes}
        view = ClusterView.from_objects(
            slices=slices,
            classes=classes,
            nodes=list(nodes.values()),
            claims=list(claims.values()),
            own_driver=self._driver,
        )
        self._log_ignored({i.reason for i in view.ignored})
        by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in pods:
            if pod_node_name(p):
                by_node[pod_node_name(p)].append(p)
        usage = NodeUsage(by_node)  # summed once per pass
        groups = group_pods(pods)
        self._metrics.queue_depth.set(len(groups))
        counts: dict[str, int] = defaultdict(int)
        world = world_digest(slices, raw_nodes, raw_claims, classes, pods)
        self._settled = {g.key: v for g in groups if (v := self._settled.get(g.key))}
        for group in groups:
            started = time.perf_counter()
            for p in group.pods:
                self._first_seen.setdefault(pod_uid(p), self._clock())
            inputs = (world, tuple(resource_version_of(p) for p in group.pods))
            if self._settled.get(group.key) == inputs:
                counts["unchanged"] += 1  # waited or failed on exactly these inputs
                continue
            try:
                d = decide(
                    group,
                    claims=claims,
                    view=view,
                    nodes=nodes,
                    pods_by_node=by_node,
                    usage=usage,
                    timestamp=rfc3339(self._clock()),
                    omit_all_requests=self._server_minor() >= CONFIG_OMITS_ALL_FROM,
                )
                self._apply(group, d, claims)
            except NotLeader:
                raise
            except KubeError as e:
                if e.retryable:  # throttled or failing server: end the pass and back off
                    raise
                bind(log, group=group.key).warning(
                    "group %s: API error, retrying next pass: %s", group.key, e
                )
                d = Decision(GroupOutcome.ERROR, str(e))
            except Exception:  # one bad group must not stop the others
                bind(log, group=group.key).exception("group %s: unexpected error", group.key)
                d = Decision(GroupOutcome.ERROR, "internal error")
            counts[d.outcome.value] += 1
            self._metrics.observe(d.outcome.value, time.perf_counter() - started)
            if d.outcome.settles:
                self._settled[group.key] = inputs
            else:
                self._settled.pop(group.key, None)
        counts["released"] = self._release_unused(pods, claims)
        counts["rescued"] = self._rescue_stuck(pods, claims)
        return {k: v for k, v in counts.items() if v}

    def _read(self) -> tuple[list[dict[str, Any]], ...]:
        """Pods (slim), claims, nodes, slices, classes: from the watch-fed cache, or listed."""
        if self._cache is not None:
            k = self._cache
            return (k.pods.items(), k.claims.items(), k.nodes.items(), k.slices.items(),
                    k.classes.items())  # fmt: skip
        c = self._client
        return (
            [slim_pod(p) for p in c.list(PODS).items],
            c.list(RESOURCECLAIMS).items,
            c.list(NODES).items,
            c.list(RESOURCESLICES).items,
            c.list(DEVICECLASSES).items,
        )

    def _forget_gone(self, live: set[str]) -> None:
        self.teller.forget(live)
        for memo in (self._ungated_at, self._first_seen):
            for uid in [u for u in memo if u not in live]:
                del memo[uid]

    def _log_ignored(self, reasons: set[str]) -> None:
        """Warn once per slice the allocator refuses (every pass sees it again)."""
        for reason in sorted(reasons - self._ignored):
            log.warning("ignoring ResourceSlices: %s", reason)
        self._ignored = reasons

    # --- lifecycle -----------------------------------------------------------------------------

    def _release_unused(
        self, pods: list[dict[str, Any]], claims: dict[ClaimKey, dict[str, Any]]
    ) -> int:
        """Deallocate claims this controller allocated that no pod uses any more (a gated pod
        deleted before it ran): their devices would otherwise stay taken."""
        used: set[ClaimKey] = set()
        for p in pods:
            ns = namespace_of(p)
            used.update((ns, n) for n in claim_names(p)[0])
        released = 0
        for key, c in claims.items():
            if key in used or claim_reserved_for(c) or not _ours(claim_allocation(c)):
                continue
            self._fence()
            self.writes.release([c])
            log.info("released unused claim %s/%s", *key)
            released += 1
        return released

    def _rescue_stuck(
        self, pods: list[dict[str, Any]], claims: dict[ClaimKey, dict[str, Any]]
    ) -> int:
        """A pod we ungated that the scheduler still cannot bind after the deadline: release
        its (unreserved) claims so the scheduler can allocate them elsewhere, and say so."""
        rescued = 0
        for p in pods:
            key = pod_uid(p)
            if pod_node_name(p) or is_deleting(p):
                self._ungated_at.pop(key, None)
                continue
            since = self._ungated_at.get(key)
            if since is None or self._clock() - since < self._deadline:
                continue
            ns = namespace_of(p)
            mine = [
                c
                for n in claim_names(p)[0]
                if (c := claims.get((ns, n))) is not None and not claim_reserved_for(c)
            ]
            self._fence()
            self.writes.release(mine)
            self._ungated_at.pop(key, None)
            self.teller.tell_pod(
                p,
                EventType.WARNING,
                "Rescheduling",
                f"not bound {self._deadline:.0f}s after its claims were allocated; "
                "released them so the scheduler can place the pod elsewhere",
                placed=False,
            )
            rescued += 1
        return rescued

    # --- writes ----------------------------------------------------------------------------

    def _apply(self, group: Group, d: Decision, claims: dict[ClaimKey, dict[str, Any]]) -> None:
        if d.outcome.writes:
            self._fence()
        if d.outcome is GroupOutcome.ALLOCATE:
            try:
                self.writes.allocate(d.allocations, claims)
            except (Conflict, Invalid, NotFound) as e:
                self.teller.tell(
                    group,
                    EventType.WARNING,
                    "AllocationConflict",
                    f"a claim changed while allocating ({e}); retrying",
                )
                return
            self._ungate(group, d)
            for p in group.pods:
                waited = self._clock() - self._first_seen.pop(pod_uid(p), self._clock())
                self._metrics.gang_wait.observe(waited)
            return
        if d.outcome is GroupOutcome.UNGATE:
            self._ungate(group, d)
        elif d.outcome is GroupOutcome.ROLLBACK:
            self.writes.release([c for k in d.claims if (c := claims.get(k)) is not None])
            self.teller.tell(group, EventType.NORMAL, "RolledBack", d.message)
        elif d.outcome is GroupOutcome.WAIT:
            self.teller.tell(group, EventType.NORMAL, "Waiting", d.message)
        elif d.outcome is GroupOutcome.FAIL:
            self.teller.tell(group, EventType.WARNING, "Unplaceable", d.message)

    def _ungate(self, group: Group, d: Decision) -> None:
        for pod in group.pods:
            self.writes.remove_gate(pod)
            node = d.nodes.get(pod_key(pod), "")
            self._ungated_at[pod_uid(pod)] = self._clock()
            self.teller.tell_pod(
                pod,
                EventType.NORMAL,
                "Allocated",
                f"claims allocated{' on node ' + node if node else ''}; gate removed",
                placed=True,
            )
