"""Failed verdicts remembered across decisions until the node's inputs change, and nodes in the
same state sharing one search, counters included (issue 14: an unplaceable claim on
dynamic-MIG nodes searched every node to the step budget in every pass)."""

from __future__ import annotations

import copy
from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator, Outcome
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import Claim, parse_claim
from gpudra.allocation.memo import REMEMBERED, FailedVerdicts
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

NODES = ("n1", "n2")
SLICES = [s for n in NODES for s in mig_slices(n)]


# 9 x 1g.10gb on distinct GPUs of 8-GPU nodes: counting refuses it without a search
UNPLACEABLE = [
    parse_claim(claim(mig("g", 9, "1g.10gb"), constraints=[distinct("parentIndex", "g")]))
]
# a 1g.10gb beside a 7g.80gb on its GPU: the search tries each 7g.80gb placement (8 steps)
NO_ROOM = [
    parse_claim(
        claim(
            mig("w", 1, "7g.80gb"),
            mig("s", 1, "1g.10gb"),
            constraints=[same("parentIndex", "w", "s")],
        )
    )
]


def decide(
    claims: list[Claim],
    failures: FailedVerdicts,
    *,
    slices: list[dict[str, Any]] = SLICES,
    in_use: tuple[str, ...] = (),
    budget: int = 200_000,
) -> Outcome:
    """One pass: a view built afresh from the API objects, and a new allocator."""
    view = ClusterView.from_objects(
        slices=slices,
        classes=[device_class(MIG_CLASS)],
        nodes=[node(n) for n in NODES],
        claims=[allocated("x", "n1", *in_use)] if in_use else [],
    )
    return Allocator(view, budget=budget, failures=failures).allocate(claims)


def test_the_unplaceable_mig_claim_is_refused_without_searching_then_remembered() -> None:
    failures = FailedVerdicts()
    first = decide(UNPLACEABLE, failures)
    assert not first.feasible
    assert (first.search_steps, first.remembered) == (0, 0)  # was 2 x 200,001, then gave up
    text = explain(first, UNPLACEABLE)
    assert "gave up" not in text
    why = (
        "needs 9 devices with distinct gpu.gpudra.io/parentIndex; the 56 candidates that fit "
        "have 8 value(s)"
    )
    assert text.count(why) == 2
    again = decide(UNPLACEABLE, failures)
    assert (again.search_steps, again.remembered) == (0, 2)
    assert explain(again, UNPLACEABLE) == text


def test_a_failed_search_is_remembered_until_the_node_changes() -> None:
    failures = FailedVerdicts()
    first = decide(NO_ROOM, failures)
    assert not first.feasible
    # n2 is in n1's state, counters included: one search serves both
    assert (first.search_steps, first.remembered, len(failures)) == (8, 0, 2)
    text = explain(first, NO_ROOM)
    assert "needs 1 device(s); 0 of its 56 candidate(s) fit the constraints and counters" in text

    again = decide(NO_ROOM, failures)
    assert (again.search_steps, again.remembered) == (0, 2)
    assert explain(again, NO_ROOM) == text

    # n1 has a 1g.10gb in use now: n1 is searched again, n2 is still remembered
    busy = decide(NO_ROOM, failures, in_use=("gpu-3-mig-1g10gb-19-0",))
    assert (busy.search_steps, busy.remembered) == (7, 1)  # GPU 3's 7g.80gb is refused by counting
    # freed again: n1's inputs are those of the first pass, and so is its key
    freed = decide(NO_ROOM, failures)
    assert (freed.search_steps, freed.remembered) == (0, 2)

    # a device's content changes (a taint on n2's GPU 0): n2 is searched again
    tainted = copy.deepcopy(SLICES)
    device = next(
        d
        for s in tainted
        if s["spec"]["nodeName"] == "n2"
        for d in s["spec"].get("devices") or []
        if d["name"] == "gpu-0-mig-1g10gb-19-0"
    )
    device["taints"] = [{"key": "example.com/broken", "effect": "NoSchedule"}]
    changed = decide(NO_ROOM, failures, slices=tainted)
    assert changed.remembered == 1 and changed.search_steps > 0


def test_the_budget_is_part_of_the_verdict() -> None:
    failures = FailedVerdicts()
    short = decide(NO_ROOM, failures, budget=3)
    assert "search gave up after 3 placement attempts" in explain(short, NO_ROOM)
    assert decide(NO_ROOM, failures, budget=3).remembered == 2
    full = decide(NO_ROOM, failures)
    assert (full.search_steps, full.remembered) == (8, 0)


def test_feasible_answers_are_not_remembered() -> None:
    failures = FailedVerdicts()
    fits = [parse_claim(claim(mig("g", 8, "1g.10gb"), constraints=[distinct("parentIndex", "g")]))]
    assert decide(fits, failures).feasible
    assert len(failures) == 0


def test_remembered_verdicts_are_bounded() -> None:
    failures = FailedVerdicts(maxsize=2)
    diag = decide(NO_ROOM, FailedVerdicts()).diagnoses[0]
    for key in ("a", "b", "c"):
        failures.put((key,), diag)
    assert failures.get(("b",)) == diag  # used: now the most recent
    failures.put(("d",), diag)
    assert len(failures) == 2
    assert [failures.get((k,)) is not None for k in "abcd"] == [False, True, False, True]


def test_allocators_share_the_process_wide_memory_by_default() -> None:
    view = ClusterView.from_objects(slices=SLICES, classes=[device_class(MIG_CLASS)], nodes=[])
    assert Allocator(view).failures is REMEMBERED
