"""The go-gpuallocator baseline (bench/preferred/gpuallocator.py) reproduces the documented
facts of the best-effort policy (shared/reference/gpu-facts.md §4.2, §7.4-7.6), and gpudra's
``preferred_gpus`` is optimal on every DGX-1V state the benchmark asks about."""

from __future__ import annotations

import itertools
import math
from functools import cache

import pytest

from bench.preferred.gpuallocator import allocate, iterate_partitions, pair_table
from gpudra.deviceplugin.preferred import preferred_gpus
from gpudra.devices.topology import Topology
from gpudra.nvml.mock import MockBackend, load_machine


@cache
def dgx1() -> Topology:
    return MockBackend(load_machine("dgx1-v100"), node_name="n").inventory().topology


def dgx1_table() -> list[list[int]]:
    return pair_table(dgx1().pair_score, 8)


@pytest.mark.parametrize(
    ("available", "required", "expected"),
    [
        pytest.param(range(8), (), (0,), id="all-free"),
        pytest.param((3, 5, 6), (), (3,), id="first-of-three"),
        pytest.param((2, 3, 6, 7), (6,), (6,), id="required-wins"),
    ],
)
def test_size_one_takes_the_first_available(
    available: range | tuple[int, ...], required: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    assert allocate(dgx1_table(), list(available), required, 1) == expected


def test_dgx1_four_of_eight_is_a_half() -> None:
    answer = allocate(dgx1_table(), range(8), (), 4)
    assert set(answer) in ({0, 1, 2, 3}, {4, 5, 6, 7})


def test_five_available_three_requested_can_return_padding() -> None:
    """§7.6 (NVIDIA/go-gpuallocator#80): a PCIe box of 5 GPUs where 3 and 4 share an NVLink
    bridge.  The best partition is {0,1,2} + {3,4,pad}; its best set is the padded one."""
    table = [[0 if a == b else 10 for b in range(5)] for a in range(5)]
    table[3][4] = table[4][3] = 210
    assert allocate(table, range(5), (), 3) == (3, 4, None)


def test_padding_never_returned_with_a_required_gpu() -> None:
    table = [[0 if a == b else 10 for b in range(5)] for a in range(5)]
    table[3][4] = table[4][3] = 210
    assert None not in allocate(table, range(5), (0,), 3)


@pytest.mark.parametrize(
    ("size", "walked", "upper_bound"),
    [
        pytest.param(2, 105, 105, id="k2"),
        pytest.param(3, 280, 280, id="k3"),
        pytest.param(4, 35, 35, id="k4"),
        pytest.param(7, 8, 1716, id="k7"),
        pytest.param(8, 1, 1, id="k8"),
    ],
)
def test_partition_counts_for_eight_gpus(size: int, walked: int, upper_bound: int) -> None:
    """§7.5's counts are the bound before padding pruning; upstream walks only partitions
    whose sets hold no padding or all of it (8 for 7-of-8)."""
    unpruned = sum(1 for _ in iterate_partitions(range(8), size, prune_padding=False))
    m = math.ceil(8 / size) * size
    formula = math.factorial(m) // (math.factorial(size) ** (m // size) * math.factorial(m // size))
    assert unpruned == upper_bound == formula
    assert sum(1 for _ in iterate_partitions(range(8), size)) == walked


def test_partitions_are_disjoint_and_cover_the_padded_list() -> None:
    for part in iterate_partitions(range(5), 3):
        slots = [s for group in part for s in group]
        assert len(slots) == 6
        assert sorted(s for s in slots if s is not None) == [0, 1, 2, 3, 4]


def test_preferred_gpus_is_optimal_on_every_dgx1_state() -> None:
    topo = dgx1()
    for n in range(1, 9):
        for state in itertools.combinations(range(8), n):
            for size in range(1, n + 1):
                for must in ((), (state[0],)):
                    answer = preferred_gpus(topo, state, must, size)
                    rest = [g for g in state if g not in must]
                    best = max(
                        topo.set_bandwidth((*must, *extra))
                        for extra in itertools.combinations(rest, size - len(must))
                    )
                    assert len(answer) == size, (state, must, size)
                    assert set(must) <= set(answer) <= set(state), (state, must, size)
                    assert topo.set_bandwidth(answer) == pytest.approx(best), (state, must, size)
