"""Score feasible allocations: NVLink bandwidth inside the set, what it leaves behind, packing.

The topology is rebuilt from what the node daemons publish (``index``, ``nvlinkPeers``,
``nvlinkDomain``/``nvlinkDomainLinks``, ``nvlinkGBps``), so the controller needs nothing
beyond the ResourceSlices.  For each claim's whole GPUs on the node:

    score = 1000 * bandwidth_share + 100 * left_behind + 10 * packing

* ``bandwidth_share`` = aggregate NVLink bandwidth of the chosen set / the best any set of
  the same size reaches on this node when it is empty (0 on a node without NVLink: a
  multi-GPU claim prefers NVLink-connected GPUs even if it did not ask for them; a
  single-GPU claim scores 1 everywhere);
* ``left_behind`` = for the common sizes 2 and 4, the best bandwidth still reachable among
  the GPUs left free / the best on an empty node, averaged (keeps well-connected groups and
  whole quads free; 1 when nothing remains to compare);
* ``packing`` = share of the node's GPUs in use afterwards (fills partly used nodes first, so
  whole nodes stay free for large jobs).

Weights are lexicographic in practice: bandwidth first, then fragmentation, then packing.
For MIG devices ``packing`` is how full the parent GPUs' memory slices are afterwards, so
placements fill partly used GPUs first and keep whole GPUs free.  For shares of a shareable
GPU (consumable capacity) it is how full the GPU's capacities are afterwards, and a GPU
that has shares counts as used for ``left_behind``: shares fill a shared GPU before they
start on another.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.inputs import Device
from gpudra.allocation.search import Choice, Solution
from gpudra.catalogue import attributes as attr
from gpudra.devices.topology import NvLinkPair, NvSwitchDomain, Topology
from gpudra.kubetypes.quantity import exact

W_BANDWIDTH, W_LEFT, W_PACK = 1000.0, 100.0, 10.0
LEFT_SIZES = (2, 4)


@dataclass(frozen=True)
class Score:
    total: float
    bandwidth_share: float
    left_behind: float
    packing: float
    bandwidth_gbps: float

    def describe(self) -> str:
        return (
            f"score {self.total:.1f} = 1000x{self.bandwidth_share:.2f} bandwidth share "
            f"({self.bandwidth_gbps:g} GB/s) + 100x{self.left_behind:.2f} left behind "
            f"+ 10x{self.packing:.2f} packing"
        )


def _int(dev: Device, name: str) -> int | None:
    v = dev.attr(f"{dev.driver}/{name}")
    return int(v[1]) if v is not None and v[0] == "int" else None


def _str(dev: Device, name: str) -> str | None:
    v = dev.attr(f"{dev.driver}/{name}")
    return str(v[1]) if v is not None and v[0] == "string" else None


def is_whole_gpu(dev: Device) -> bool:
    return _str(dev, attr.TYPE) == attr.TYPE_GPU and _int(dev, attr.INDEX) is not None


_TOPOLOGIES: dict[tuple[object, ...], Topology] = {}


def topology_of(gpus: list[Device]) -> tuple[Topology, dict[tuple[str, str, str], int]]:
    """A node's NVLink topology from its whole-GPU devices, plus device key -> position.

    Topologies are shared between nodes that publish the same topology attributes, so the
    memoized best-set answers carry over from node to node."""
    ordered = sorted(gpus, key=lambda d: _int(d, attr.INDEX) or 0)
    pos = {d.key: i for i, d in enumerate(ordered)}
    sig = tuple(d.attr_signature for d in ordered)
    cached = _TOPOLOGIES.get(sig)
    if cached is not None:
        return cached, pos
    if len(_TOPOLOGIES) > 4096:
        _TOPOLOGIES.clear()
    topo = _build_topology(ordered, pos)
    _TOPOLOGIES[sig] = topo
    return topo, pos


def _build_topology(gpus: list[Device], pos: dict[tuple[str, str, str], int]) -> Topology:
    by_index = {_int(d, attr.INDEX): pos[d.key] for d in gpus}
    links: dict[tuple[int, int], NvLinkPair] = {}
    domains: dict[str, list[int]] = {}
    domain_links: dict[str, tuple[int, float]] = {}
    for d in gpus:
        me = pos[d.key]
        gbps = float(_int(d, attr.NVLINK_GBPS) or 0) or 50.0
        for part in (_str(d, attr.NVLINK_PEERS) or "").split(","):
            if "x" not in part:
                continue
            peer_index, _, n = part.partition("x")
            peer = by_index.get(int(peer_index))
            if peer is not None and peer != me:
                a, b = min(me, peer), max(me, peer)
                links[(a, b)] = NvLinkPair(a=a, b=b, links=int(n), link_bandwidth_gbps=gbps)
        dom = _str(d, attr.NVLINK_DOMAIN)
        if dom:
            domains.setdefault(dom, []).append(me)
            domain_links[dom] = (_int(d, attr.NVLINK_DOMAIN_LINKS) or 1, gbps)
    return Topology(
        gpu_count=len(gpus),
        nvlinks=tuple(links.values()),
        nvswitch_domains=tuple(
            NvSwitchDomain(
                gpus=tuple(sorted(m)),
                links_per_gpu=domain_links[k][0],
                link_bandwidth_gbps=domain_links[k][1],
            )
            for k, m in domains.items()
            if len(m) > 1
        ),
    )


def bandwidth_share(topo: Topology, gpus: list[int]) -> tuple[float, float]:
    """(aggregate NVLink bandwidth of ``gpus`` / the best any set of that size reaches on the
    empty node, the bandwidth in GB/s); (1, 0) for fewer than two GPUs."""
    if len(gpus) < 2:
        return 1.0, 0.0
    bw = topo.set_bandwidth(gpus)
    best = topo.best_bandwidth(len(gpus))
    return (bw / best if best > 0 else 0.0), bw


def left_behind(topo: Topology, left: list[int]) -> float:
    """How well connected the GPUs left free are: for the common sizes 2 and 4, the best
    bandwidth still reachable among ``left`` / the best on the empty node, averaged; 1 when
    nothing remains to compare."""
    ratios = []
    for size in LEFT_SIZES:
        full = topo.best_bandwidth(size)
        if full > 0 and len(left) >= size:
            ratios.append(topo.best_bandwidth(size, among=left) / full)
    return sum(ratios) / len(ratios) if ratios else 1.0


def mig_packing(view: ClusterView, migs: list[Device]) -> float:
    """MIG placement packing: how full the parent GPUs' memory slices are afterwards (fill
    partly used GPUs first, so whole GPUs and large placements stay available)."""
    fills = []
    for d in migs:
        for counter_set, amounts in d.consumes:
            used = view.counters_used.get((d.driver, d.pool, counter_set), {})
            taken = sum(1 for v in used.values() if v.sign > 0)
            fills.append(min(1.0, (taken + len(amounts)) / 8))
    return sum(fills) / len(fills) if fills else 0.0


def share_packing(view: ClusterView, shares: list[Choice]) -> float:
    """How full each shared device is afterwards (its fullest capacity), averaged."""
    fills = []
    for c in shares:
        used = view.shares_used.get(c.device.key) or {}
        fill = 0.0
        for name, amount in c.consumed or ():
            cap = c.device.capacity.get(name)
            if cap is None or cap.value.sign <= 0:
                continue
            after = amount + used[name] if name in used else amount
            fill = max(fill, float(exact(after) / exact(cap.value)))
        fills.append(min(1.0, fill))
    return sum(fills) / len(fills) if fills else 0.0


def score(view: ClusterView, sol: Solution) -> Score:
    """Score one solution; the view's in-use set is the state *before* it."""
    node_gpus = [d for d in view.devices_for(sol.node) if is_whole_gpu(d)]
    topo, pos = topology_of(node_gpus)
    chosen_all = {c.device.key for c in sol.choices}
    free = [pos[d.key] for d in node_gpus if d.key not in view.in_use and not view.shared(d.key)]
    shares, bws = [], 0.0
    for claim in {c.claim for c in sol.choices}:
        mine = [pos[d.key] for d in sol.devices_of(claim) if d.key in pos]
        if len(mine) < 2:
            continue
        share_of, bw = bandwidth_share(topo, mine)
        shares.append(share_of)
        bws += bw
    share = sum(shares) / len(shares) if shares else 1.0
    chosen_pos = {pos[k] for k in chosen_all if k in pos}
    left = left_behind(topo, [p for p in free if p not in chosen_pos])
    devices = view.devices_for(sol.node)
    migs = [c.device for c in sol.choices if _str(c.device, attr.TYPE) == attr.TYPE_MIG]
    share_choices = [c for c in sol.choices if c.consumed is not None]
    if migs:
        packing = mig_packing(view, migs)
    elif share_choices:
        packing = share_packing(view, share_choices)
    else:
        used_after = sum(1 for d in devices if d.key in view.in_use or d.key in chosen_all)
        packing = used_after / len(devices) if devices else 0.0
    total = W_BANDWIDTH * share + W_LEFT * left + W_PACK * packing
    return Score(
        total=total,
        bandwidth_share=share,
        left_behind=left,
        packing=packing,
        bandwidth_gbps=bws,
    )
