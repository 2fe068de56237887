"""Topology queries against the published DGX-1V facts, then properties over random graphs."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gpudra.devices.topology import NvLinkPair, NvSwitchDomain, PcieLevel, PciePair, Topology
from gpudra.nvml.mock import MockBackend, load_machine

# go-gpuallocator best-effort pair scores on DGX-1 V100 (https://github.com/NVIDIA/go-gpuallocator,
# gpuallocator/common_test.go).
DGX1_SCORES = [
    [0, 150, 130, 230, 210, 10, 10, 10],
    [150, 0, 230, 130, 10, 210, 10, 10],
    [130, 230, 0, 250, 10, 10, 110, 10],
    [230, 130, 250, 0, 10, 10, 10, 110],
    [210, 10, 10, 10, 0, 150, 130, 230],
    [10, 210, 10, 10, 150, 0, 230, 130],
    [10, 10, 110, 10, 130, 230, 0, 250],
    [10, 10, 10, 110, 230, 130, 250, 0],
]


def dgx1() -> Topology:
    return MockBackend(load_machine("dgx1-v100"), node_name="n").inventory().topology


def test_dgx1_pair_scores_match_go_gpuallocator() -> None:
    topo = dgx1()
    for a, b in itertools.permutations(range(8), 2):
        assert topo.pair_score(a, b) == DGX1_SCORES[a][b], (a, b)


def test_dgx1_best_sets() -> None:
    topo = dgx1()
    best2 = topo.ranked_sets(2)
    assert {s for s, bw in best2 if bw == best2[0][1]} == {
        (0, 3),
        (0, 4),
        (1, 2),
        (1, 5),
        (2, 3),
        (4, 7),
        (5, 6),
        (6, 7),
    }
    # among equal bandwidth the PCIe-closer pair ranks first, as go-gpuallocator's score does
    assert best2[0][0] in {(2, 3), (6, 7)}
    best4 = topo.ranked_sets(4, limit=2)
    assert {s for s, _ in best4} == {(0, 1, 2, 3), (4, 5, 6, 7)}
    assert topo.set_score((0, 1, 2, 3)) == 1120
    assert topo.set_bandwidth((0, 1, 2, 3)) == 450.0
    assert topo.best_bandwidth(4, among=[0, 1, 2, 5, 6]) < 450.0


def test_dgx1_is_one_component_and_splits_when_gpus_are_taken() -> None:
    topo = dgx1()
    assert topo.connected_components() == [frozenset(range(8))]
    assert topo.connected_components(among=[0, 3, 6]) == [frozenset({0, 3}), frozenset({6})]


def test_nvswitch_domain_gives_every_pair_full_links() -> None:
    topo = Topology(
        gpu_count=4,
        nvswitch_domains=(
            NvSwitchDomain(gpus=(0, 1, 2, 3), links_per_gpu=18, link_bandwidth_gbps=50),
        ),
    )
    assert topo.nvlink_count(0, 3) == 18
    assert topo.bandwidth_gbps(1, 2) == 900
    assert topo.pcie_level(1, 2) is PcieLevel.SYS


@st.composite
def graphs(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(min_value=1, max_value=8))
    pairs = list(itertools.combinations(range(n), 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    links = [
        NvLinkPair(a=a, b=b, links=draw(st.integers(1, 4)), link_bandwidth_gbps=50)
        for a, b in chosen
    ]
    levels = [PciePair(a=a, b=b, level=draw(st.sampled_from(list(PcieLevel)))) for a, b in pairs]
    return Topology(gpu_count=n, nvlinks=tuple(links), pcie=tuple(levels))


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_components_partition_gpus_and_no_link_crosses(topo: Topology) -> None:
    comps = topo.connected_components()
    assert sorted(g for c in comps for g in c) == list(range(topo.gpu_count))
    where = {g: i for i, c in enumerate(comps) for g in c}
    for a, b, _ in topo.linked_pairs():
        assert where[a] == where[b]


@settings(max_examples=200, deadline=None)
@given(graphs(), st.integers(min_value=1, max_value=8))
def test_ranked_sets_are_sorted_and_best_is_the_maximum(topo: Topology, k: int) -> None:
    ranked = topo.ranked_sets(k)
    if k > topo.gpu_count:
        assert ranked == []
        return
    bws = [bw for _, bw in ranked]
    assert bws == sorted(bws, reverse=True)
    brute = max(topo.set_bandwidth(s) for s in itertools.combinations(range(topo.gpu_count), k))
    assert bws[0] == brute
    assert len(ranked) == len({s for s, _ in ranked})
