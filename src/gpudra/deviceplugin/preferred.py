"""GetPreferredAllocation (pure): which ``size`` of the available GPUs the kubelet should use.

Whole GPUs are ranked with the DRA allocator's scoring terms (``gpudra.allocation.score``):
first the aggregate NVLink bandwidth inside the set, then what the set leaves behind (the best
pair and quad still reachable among the GPUs that stay free), then go-gpuallocator's PCIe
score, then the lowest indices.  Here the order is strictly lexicographic: the kubelet asks
about one node and one container, so no weighting across nodes is needed, and a set with
less bandwidth is never preferred for a better remainder.  Every candidate set is scored:
C(8, k) <= 70 on an 8-GPU node, C(16, 8) = 12,870 on a DGX-2.

Devices the scorer cannot place (MIG devices, time-slicing replicas) are spread over their
GPUs instead, NVIDIA's ``distributed`` policy: replicas come from the GPUs with the most
replicas still free, so shared GPUs fill evenly.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from gpudra.allocation.score import left_behind
from gpudra.devices.topology import Topology


def preferred_gpus(
    topo: Topology, available: Sequence[int], must_include: Sequence[int], size: int
) -> tuple[int, ...]:
    """The best ``size`` GPUs (indices) among ``available`` that contain ``must_include``;
    () when no such set exists (``size`` out of range, or a must-include GPU unavailable)."""
    pool = sorted(set(available))
    must = sorted(set(must_include))
    if size <= 0 or size > len(pool) or len(must) > size or not set(must) <= set(pool):
        return ()
    rest = [g for g in pool if g not in must]
    best: tuple[tuple[float, float, int], tuple[int, ...]] | None = None
    for extra in itertools.combinations(rest, size - len(must)):
        chosen = tuple(sorted((*must, *extra)))
        left = [g for g in pool if g not in chosen]
        key = (topo.set_bandwidth(chosen), left_behind(topo, left), topo.set_score(chosen))
        # ties keep the first (lowest indices): combinations come in lexicographic order
        if best is None or key > best[0]:
            best = (key, chosen)
    return best[1] if best else ()


def distributed(
    available: Sequence[str], must_include: Sequence[str], size: int, parent: dict[str, str]
) -> tuple[str, ...]:
    """``size`` device IDs spread over their parents (``parent``: ID -> GPU UUID): each next
    one from the parent with the most IDs still available, then the lowest ID; () when
    impossible."""
    pool = list(dict.fromkeys(available))
    must = list(dict.fromkeys(must_include))
    if size <= 0 or size > len(pool) or len(must) > size or not set(must) <= set(pool):
        return ()

    def gpu(i: str) -> str:
        return parent.get(i) or i

    chosen = list(must)
    free = [i for i in pool if i not in chosen]
    left = Counter(gpu(i) for i in free)
    taken = Counter(gpu(i) for i in chosen)
    while len(chosen) < size:
        pick = min(free, key=lambda i: (taken[gpu(i)], -left[gpu(i)], i))
        chosen.append(pick)
        free.remove(pick)
        p = gpu(pick)
        taken[p] += 1
        left[p] -= 1
    return tuple(chosen)
