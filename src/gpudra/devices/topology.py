"""NVLink and PCIe topology of one node's GPUs, and the queries placement decisions need.

Links are per GPU pair (count and per-link bandwidth, as on DGX-1's hybrid cube mesh) or
implied by an NVSwitch domain (every pair of member GPUs gets the members' full link count,
as ``nvidia-smi topo -m`` shows ``NV18`` on DGX H100).  A multi-node NVLink clique (GB200)
is carried as ids so that GPUs on different nodes of one clique can be matched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from enum import StrEnum
from functools import cached_property

from pydantic import Field

from gpudra.common.model import Model


class PcieLevel(StrEnum):
    """The closest common PCIe ancestor of two GPUs, named like ``nvidia-smi topo -m``."""

    PIX = "PIX"  # one PCIe switch
    PXB = "PXB"  # several PCIe switches, no host bridge
    PHB = "PHB"  # a PCIe host bridge
    NODE = "NODE"  # host bridges within one NUMA node
    SYS = "SYS"  # across NUMA nodes (SMP interconnect)

    @property
    def points(self) -> int:
        """go-gpuallocator's score for the level (``calculateGPUPairScore`` in
        https://github.com/NVIDIA/go-gpuallocator, gpuallocator/besteffort_policy.go)."""
        return {"PIX": 50, "PXB": 40, "PHB": 30, "NODE": 20, "SYS": 10}[self.value]


NVLINK_POINTS_PER_LINK = 100


class NvLinkPair(Model):
    """Direct NVLinks between two GPUs (by index)."""

    a: int = Field(ge=0)
    b: int = Field(ge=0)
    links: int = Field(ge=1, le=18)
    link_bandwidth_gbps: float = Field(gt=0, description="bidirectional GB/s per link")


class NvSwitchDomain(Model):
    """GPUs connected all-to-all through NVSwitches."""

    gpus: tuple[int, ...]
    links_per_gpu: int = Field(ge=1, le=18)
    link_bandwidth_gbps: float = Field(gt=0)


class PciePair(Model):
    a: int = Field(ge=0)
    b: int = Field(ge=0)
    level: PcieLevel


class Topology(Model):
    """Interconnect of ``gpu_count`` GPUs, indexed 0..gpu_count-1."""

    gpu_count: int = Field(ge=0)
    nvlinks: tuple[NvLinkPair, ...] = ()
    nvswitch_domains: tuple[NvSwitchDomain, ...] = ()
    pcie: tuple[PciePair, ...] = ()
    clique_id: str | None = Field(default=None, description="multi-node NVLink clique (GB200)")
    cluster_uuid: str | None = None

    @cached_property
    def _links(self) -> dict[tuple[int, int], tuple[int, float]]:
        out: dict[tuple[int, int], tuple[int, float]] = {}
        for dom in self.nvswitch_domains:
            for a, b in itertools.combinations(sorted(dom.gpus), 2):
                out[(a, b)] = (dom.links_per_gpu, dom.link_bandwidth_gbps)
        for p in self.nvlinks:
            out[_key(p.a, p.b)] = (p.links, p.link_bandwidth_gbps)
        return out

    @cached_property
    def _pcie(self) -> dict[tuple[int, int], PcieLevel]:
        return {_key(p.a, p.b): p.level for p in self.pcie}

    @cached_property
    def _bw(self) -> list[list[float]]:
        n = self.gpu_count
        m = [[0.0] * n for _ in range(n)]
        for (a, b), (links, per_link) in self._links.items():
            if a < n and b < n:
                m[a][b] = m[b][a] = links * per_link
        return m

    @cached_property
    def _best_memo(self) -> dict[tuple[int, frozenset[int]], float]:
        return {}

    def nvlink_count(self, a: int, b: int) -> int:
        return self._links.get(_key(a, b), (0, 0.0))[0]

    def bandwidth_gbps(self, a: int, b: int) -> float:
        """Bidirectional NVLink bandwidth between two GPUs; 0 without NVLink."""
        links, per_link = self._links.get(_key(a, b), (0, 0.0))
        return links * per_link

    def pcie_level(self, a: int, b: int) -> PcieLevel:
        return self._pcie.get(_key(a, b), PcieLevel.SYS)

    def pair_score(self, a: int, b: int) -> int:
        """go-gpuallocator's pair score: 100 per NVLink plus the PCIe level's points."""
        return NVLINK_POINTS_PER_LINK * self.nvlink_count(a, b) + self.pcie_level(a, b).points

    def set_bandwidth(self, gpus: Iterable[int]) -> float:
        """Aggregate NVLink bandwidth over all pairs inside the set."""
        m = self._bw
        return sum(m[a][b] for a, b in itertools.combinations(sorted(gpus), 2))

    def set_score(self, gpus: Iterable[int]) -> int:
        return sum(self.pair_score(a, b) for a, b in itertools.combinations(sorted(gpus), 2))

    def linked_pairs(self) -> list[tuple[int, int, int]]:
        """(a, b, links) for every NVLink-connected pair, a < b, sorted."""
        return sorted((a, b, n) for (a, b), (n, _) in self._links.items() if n > 0)

    def peers(self, gpu: int) -> list[int]:
        return sorted({b if a == gpu else a for a, b, _ in self.linked_pairs() if gpu in (a, b)})

    def connected_components(self, among: Iterable[int] | None = None) -> list[frozenset[int]]:
        """NVLink-connected components of the GPUs in ``among`` (default: all), largest first."""
        nodes = set(range(self.gpu_count) if among is None else among)
        seen: set[int] = set()
        comps: list[frozenset[int]] = []
        for start in sorted(nodes):
            if start in seen:
                continue
            comp, stack = {start}, [start]
            while stack:
                cur = stack.pop()
                for nxt in self.peers(cur):
                    if nxt in nodes and nxt not in comp:
                        comp.add(nxt)
                        stack.append(nxt)
            seen |= comp
            comps.append(frozenset(comp))
        return sorted(comps, key=lambda c: (-len(c), min(c)))

    def ranked_sets(
        self, k: int, among: Sequence[int] | None = None, limit: int | None = None
    ) -> list[tuple[tuple[int, ...], float]]:
        """Sets of ``k`` GPUs ranked by aggregate NVLink bandwidth, then PCIe score, then index.

        Enumerates combinations (not permutations); fine for a node's GPUs (C(8,4) = 70).
        """
        pool = sorted(range(self.gpu_count) if among is None else among)
        if k <= 0 or k > len(pool):
            return []
        ranked = sorted(
            itertools.combinations(pool, k),
            key=lambda s: (-self.set_bandwidth(s), -self.set_score(s), s),
        )
        chosen = ranked if limit is None else ranked[:limit]
        return [(s, self.set_bandwidth(s)) for s in chosen]

    def best_bandwidth(self, k: int, among: Iterable[int] | None = None) -> float:
        """The largest aggregate bandwidth any ``k``-set can reach (0 when none exists).

        Memoized per (k, set of GPUs): placement scoring asks the same questions often."""
        pool = frozenset(range(self.gpu_count) if among is None else among)
        key = (k, pool)
        hit = self._best_memo.get(key)
        if hit is None:
            m = self._bw
            hit = 0.0
            if 0 < k <= len(pool):
                hit = max(
                    sum(m[a][b] for a, b in itertools.combinations(s, 2))
                    for s in itertools.combinations(sorted(pool), k)
                )
            self._best_memo[key] = hit
        return hit


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)
