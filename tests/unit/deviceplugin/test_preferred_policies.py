"""GetPreferredAllocation's two policies: NVLink sets for whole GPUs (must-include, bounds)
and the even spread for replicas and MIG devices."""

from __future__ import annotations

from gpudra.deviceplugin.preferred import distributed, preferred_gpus
from tests.unit.deviceplugin.nodes import mock


def test_whole_gpus_take_the_best_linked_set_that_contains_must_include() -> None:
    topo = mock("dgx1-v100").inventory().topology
    assert preferred_gpus(topo, range(8), (), 4) in ((0, 1, 2, 3), (4, 5, 6, 7))
    # GPU 6 must be in: its double-link partner is 5 or 7, both free
    pair = preferred_gpus(topo, range(8), (6,), 2)
    assert 6 in pair and topo.set_bandwidth(pair) == topo.best_bandwidth(2, among=[5, 6, 7])
    assert preferred_gpus(topo, (1, 2), (0,), 2) == ()  # must-include not available
    assert preferred_gpus(topo, (1, 2), (), 3) == ()
    assert preferred_gpus(topo, (1, 2), (), 0) == ()


def test_a_single_gpu_keeps_the_best_pairs_free() -> None:
    topo = mock("dgx1-v100").inventory().topology
    # free: 2,3 (double link) and 4 (no link to either): take 4, keep the pair
    assert preferred_gpus(topo, (2, 3, 4), (), 1) == (4,)


def test_replicas_spread_over_their_gpus() -> None:
    parent = {f"A::{i}": "A" for i in range(4)} | {f"B::{i}": "B" for i in range(4)}
    got = distributed(sorted(parent), (), 2, parent)
    assert {parent[i] for i in got} == {"A", "B"}
    # B has more free replicas left: it gives the next one
    avail = ["A::0", "B::0", "B::1", "B::2"]
    assert distributed(avail, (), 1, parent) == ("B::0",)
    assert distributed(avail, ("A::0",), 2, parent) == ("A::0", "B::0")
    assert distributed(avail, ("C::0",), 1, parent) == ()
