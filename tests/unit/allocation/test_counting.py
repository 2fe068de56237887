"""Counting bounds before the search: a request no choice can fill is refused without trying
combinations, with the reason, and one that can be filled is searched as before (real CEL)."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import SelectorCache
from gpudra.allocation.inputs import parse_claim
from gpudra.allocation.search import NodeSearch
from gpudra_testkit.builders import (
    MIG_CLASS,
    allocated,
    claim,
    device_class,
    distinct,
    mig,
    mig_slices,
    node,
    same,
)


def search(raw: dict[str, Any], in_use: tuple[str, ...]) -> NodeSearch:
    v = ClusterView.from_objects(
        slices=mig_slices("n1"),
        classes=[device_class(MIG_CLASS)],
        nodes=[node("n1")],
        claims=[allocated("x", "n1", *in_use)] if in_use else [],
    )
    return NodeSearch(v, "n1", [parse_claim(raw)], matcher=SelectorCache())


WHOLE = tuple(f"gpu-{i}-mig-7g80gb-0-0" for i in range(7))  # GPUs 0-6 fully used by MIG

# (claim, devices in use, search steps, the request's shortfall): none of these fits on a
# dgx-h100-mig node with dynamic MIG on its 8 GPUs (7 x 1g.10gb placements each).
REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...], int, str]] = {
    "9 x 1g.10gb on distinct GPUs (issue 14: 200,001 steps, then gave up)": (
        claim(mig("g", 9, "1g.10gb"), constraints=[distinct("parentIndex", "g")]),
        (),
        0,
        "needs 9 devices with distinct gpu.gpudra.io/parentIndex; the 56 candidates that "
        "fit have 8 value(s)",
    ),
    "9 x 1g.10gb(+me) on one GPU: its memory slices": (
        claim(mig("g", 9, "1g.10gb", "1g.10gb+me"), constraints=[same("parentIndex", "g")]),
        (),
        0,
        "needs 9 device(s); the 7 counters the candidates draw on (memory slices and the "
        "like) have room for at most 7 of them",
    ),
    "3 x 3g/4g.40gb on one GPU: one memory slice": (
        claim(mig("g", 3, "3g.40gb", "4g.40gb"), constraints=[same("parentIndex", "g")]),
        (),
        0,
        "needs 3 device(s); counter memory-slice-0 of gpu-0-counter-set has 1 free and the "
        "3 smallest demands on it add up to 2",
    ),
    "2 x 1g.10gb on distinct GPUs, 7 GPUs used": (
        claim(mig("g", 2, "1g.10gb"), constraints=[distinct("parentIndex", "g")]),
        WHOLE,
        0,
        "needs 2 devices with distinct gpu.gpudra.io/parentIndex; the 7 candidates that fit "
        "have 1 value(s)",
    ),
    "a 1g.10gb beside a 7g.80gb on its GPU": (
        claim(
            mig("w", 1, "7g.80gb"),
            mig("s", 1, "1g.10gb"),
            constraints=[same("parentIndex", "w", "s")],
        ),
        (),
        8,  # one per placement of the 7g.80gb; each leaves no 1g.10gb to try
        "needs 1 device(s); 0 of its 56 candidate(s) fit the constraints and counters left",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_unfillable_request_is_refused_by_counting(case: str) -> None:
    raw, in_use, steps, why = REFUSED[case]
    s = search(raw, in_use)
    assert list(s.solutions()) == []
    assert s.steps == steps
    request = raw["spec"]["devices"]["requests"][-1]["name"]
    assert s.diag.shortfalls[request] == why


FITS: dict[str, tuple[dict[str, Any], tuple[str, ...], list[str]]] = {
    "8 x 1g.10gb on distinct GPUs": (
        claim(mig("g", 8, "1g.10gb"), constraints=[distinct("parentIndex", "g")]),
        (),
        [f"gpu-{i}-mig-1g10gb-19-0" for i in range(8)],
    ),
    "7 x 1g.10gb(+me) on one GPU": (
        claim(mig("g", 7, "1g.10gb", "1g.10gb+me"), constraints=[same("parentIndex", "g")]),
        (),
        [f"gpu-0-mig-1g10gb-19-{i}" for i in range(7)],
    ),
    "1 x 1g.10gb on the GPU 7 GPUs leave": (
        claim(mig("g", 1, "1g.10gb"), constraints=[distinct("parentIndex", "g")]),
        WHOLE,
        ["gpu-7-mig-1g10gb-19-0"],
    ),
}


@pytest.mark.parametrize("case", FITS)
def test_a_fillable_request_is_searched_as_before(case: str) -> None:
    raw, in_use, first = FITS[case]
    found = next(search(raw, in_use).solutions(), None)
    assert found is not None
    assert sorted(c.device.name for c in found.choices) == first
