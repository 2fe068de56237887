"""What decides one node's answer, so the allocator can share it or remember it (pure).

Two caches with two keys:

- Within one decision, nodes in the same state share one search.  `signature` is what the
  answer depends on apart from the node's identity (device names, not pools), so a placement
  found on one node can be rebased onto another.  It covers counters too: what each device
  draws and what is free of each counter set, so identical dynamic-MIG nodes share as well.
- Across decisions (controller passes), a failed verdict is remembered in `FailedVerdicts`.
  Its key is the claims' specs and their classes' selectors, the node, the step budget, and a
  digest of the node's inputs: every reachable device's full content, whether it is in use or
  filtered out, what is free of each counter set, and each pool's completeness.  That is all
  the search reads, so an entry cannot go stale.  Changed inputs make a different key, and the
  old entry ages out of the bounded LRU.  Only failures are kept: a feasible answer is
  committed, and that changes the node's inputs anyway.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Hashable

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.inputs import Claim
from gpudra.allocation.search import DeviceFilter, Diagnosis, Matcher
from gpudra.api.deviceclass import class_selectors

MAX_REMEMBERED = 4096


def claim_expressions(view: ClusterView, claims: list[Claim]) -> list[str]:
    """Every selector the claims' requests run: their own and their classes', sorted."""
    return sorted(
        {
            e
            for c in claims
            for cr in c.requests
            for r in cr.alternatives
            for e in (*r.selectors, *class_selectors(view.classes.get(r.device_class) or {}))
        }
    )


def signature(
    view: ClusterView,
    node: str,
    claims: list[Claim],
    matcher: Matcher,
    device_filter: DeviceFilter | None,
) -> tuple[object, ...]:
    """What decides the node's answer, node identity aside: per device its name, whether it
    is in use or filtered out, its taints, the selector verdicts, the constraint attributes,
    what scoring reads, the counters it draws and what its shares take; per pool (numbered in
    order of appearance) its completeness and what is free of each counter set."""
    exprs = claim_expressions(view, claims)
    attrs = sorted(
        {
            a
            for c in claims
            for k in c.constraints
            for a in (k.match_attribute, k.distinct_attribute)
            if a
        }
    )
    pools: dict[tuple[str, str], int] = {}
    counters: dict[tuple[int, str], object] = {}
    devices = []
    for d in view.devices_for(node):
        pool = pools.setdefault((d.driver, d.pool), len(pools))
        for counter_set, _ in d.consumes:
            if (pool, counter_set) not in counters:
                free = view.available_counters(d, counter_set)
                counters[(pool, counter_set)] = tuple(sorted(free.items()))
        devices.append(
            (
                d.name,
                pool,
                d.key in view.in_use,
                tuple(sorted((view.shares_used.get(d.key) or {}).items())),
                view.shared(d.key),
                None if device_filter is None else device_filter(d),
                tuple(tuple(sorted(t.items())) for t in d.taints),
                d.attr_signature,
                tuple(d.attrs.get(a) for a in attrs),
                tuple(matcher(e, d) for e in exprs),
                tuple((s, tuple(sorted(a.items()))) for s, a in d.consumes),
            )
        )
    complete = {(p.driver, p.name): p.complete for p in view.pools}
    return (tuple(devices), tuple(sorted(counters.items())), tuple(complete[k] for k in pools))


def failure_key(
    view: ClusterView,
    node: str,
    claims: list[Claim],
    *,
    budget: int,
    device_filter: DeviceFilter | None,
) -> tuple[Hashable, ...]:
    """The key of a remembered failure: what the claims ask, the node, and its inputs."""
    spec = tuple((c.requests, c.constraints) for c in claims)
    classes = sorted({r.device_class for c in claims for cr in c.requests for r in cr.alternatives})
    selectors = tuple(
        (name, None if cls is None else tuple(class_selectors(cls)))
        for name in classes
        for cls in (view.classes.get(name),)
    )
    digest = hashlib.sha256()
    sets: dict[tuple[str, str, str], object] = {}
    pools: set[tuple[str, str]] = set()
    for d in view.devices_for(node):
        verdict = None if device_filter is None else device_filter(d)
        shares = sorted((view.shares_used.get(d.key) or {}).items())
        digest.update(repr((d.key in view.in_use, view.shared(d.key), shares, verdict)).encode())
        digest.update(d.content)
        digest.update(b"\0")
        pools.add((d.driver, d.pool))
        for counter_set, _ in d.consumes:
            if (d.driver, d.pool, counter_set) not in sets:
                free = view.available_counters(d, counter_set)
                sets[(d.driver, d.pool, counter_set)] = tuple(sorted(free.items()))
    digest.update(repr(sorted(sets.items())).encode())
    complete = sorted(
        (p.driver, p.name, p.complete) for p in view.pools if (p.driver, p.name) in pools
    )
    digest.update(repr(complete).encode())
    return (spec, selectors, node, budget, digest.digest())


class FailedVerdicts:
    """Failed (claims, node-state) verdicts, least recently used dropped past ``maxsize``."""

    def __init__(self, maxsize: int = MAX_REMEMBERED) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[Hashable, ...], Diagnosis] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[Hashable, ...]) -> Diagnosis | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return copy.deepcopy(found)

    def put(self, key: tuple[Hashable, ...], diag: Diagnosis) -> None:
        self._entries[key] = copy.deepcopy(diag)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)


# The controller builds an Allocator per group and pass; the verdicts outlive both.
REMEMBERED = FailedVerdicts()
