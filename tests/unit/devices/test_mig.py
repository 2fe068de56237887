"""MIG placement rules: named scenarios from the MIG guide, then properties over random layouts."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudra.devices.mig import (
    MEMORY_SLICES,
    SM_SLICES,
    MigInstance,
    Placement,
    families,
    family_for_product,
    family_named,
    free_placements,
    layout_is_valid,
    placement_violation,
)

H100 = family_named("H100-80GB")


def inst(name: str, start: int) -> MigInstance:
    prof = H100.profile(name)
    assert prof is not None
    return MigInstance(profile=prof, placement=Placement(start=start, size=prof.memory_slices))


LAYOUTS = {
    "two 3g halves": ([("3g.40gb", 0), ("3g.40gb", 4)], True),
    "4g and 3g (R510+)": ([("4g.40gb", 0), ("3g.40gb", 4)], True),
    "seven 1g": ([("1g.10gb", s) for s in range(7)], True),
    "3g 2g 1g": ([("3g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6)], True),
    "four 1g.20gb": ([("1g.20gb", s) for s in (0, 2, 4, 6)], True),
    "7g alone": ([("7g.80gb", 0)], True),
    "7g and anything": ([("7g.80gb", 0), ("1g.10gb", 0)], False),
    "overlapping 3g": ([("3g.40gb", 0), ("2g.20gb", 2)], False),
    "two +me": ([("1g.10gb+me", 0), ("1g.10gb+me", 1)], False),
    "1g at slice 7": ([("1g.10gb", 7)], False),
    "2g at odd start": ([("2g.20gb", 1)], False),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_named_layouts(name: str) -> None:
    placed, ok = LAYOUTS[name]
    assert layout_is_valid([inst(p, s) for p, s in placed]) is ok


def test_violation_messages_say_why() -> None:
    three = H100.profile("3g.40gb")
    one = H100.profile("1g.10gb")
    me = H100.profile("1g.10gb+me")
    assert three and one and me
    assert "allowed starts: 0, 4" in (placement_violation([], three, 2) or "")
    overlap = placement_violation([inst("3g.40gb", 0)], one, 1) or ""
    assert "overlaps 3g.40gb at 0:4" in overlap
    assert "at most 1 instance" in (placement_violation([inst("1g.10gb+me", 0)], me, 3) or "")


def test_free_placements_shrink_as_instances_appear() -> None:
    free = free_placements(H100, [inst("3g.40gb", 0)])
    assert free["3g.40gb"] == (Placement(4, 4),)
    assert free["7g.80gb"] == ()
    assert free["4g.40gb"] == ()
    assert [p.start for p in free["1g.10gb"]] == [4, 5, 6]


def test_every_family_has_seven_compute_and_eight_memory_slices() -> None:
    for fam in families().values():
        whole = max(fam.profiles, key=lambda p: p.memory_slices)
        assert (whole.sm_slices, whole.memory_slices, whole.starts) == (7, 8, (0,))
        for p in fam.profiles:
            assert all(s >= 0 and s + p.memory_slices <= MEMORY_SLICES for s in p.starts)


@pytest.mark.parametrize(
    ("product", "family"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA H200", "H200-141GB"),
        ("Tesla V100-SXM2-32GB", None),
    ],
)
def test_family_for_product(product: str, family: str | None) -> None:
    found = family_for_product(product)
    assert (found.name if found else None) == family


def test_unknown_family_lists_known() -> None:
    with pytest.raises(KeyError, match="known families: A100-40GB"):
        family_named("B999")


attempts = st.lists(
    st.tuples(st.sampled_from(H100.profile_names()), st.integers(min_value=0, max_value=7)),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(attempts)
def test_accepted_layouts_never_overlap_or_exceed_limits(tries: list[tuple[str, int]]) -> None:
    placed: list[MigInstance] = []
    for name, start in tries:
        prof = H100.profile(name)
        assert prof is not None
        new = MigInstance(profile=prof, placement=Placement(start, prof.memory_slices))
        why = placement_violation(placed, prof, start)
        fits = (
            start in prof.starts
            and not any(p.placement.overlaps(new.placement) for p in placed)
            and sum(p.profile.name == name for p in placed) < prof.max_instances
            and sum(p.profile.sm_slices for p in placed) + prof.sm_slices <= SM_SLICES
        )
        assert (why is None) == fits, (placed, name, start, why)
        if why is None:
            placed.append(new)
    slices = [s for p in placed for s in p.placement.slices]
    assert len(slices) == len(set(slices))
    assert layout_is_valid(placed)


@settings(max_examples=200, deadline=None)
@given(attempts, st.randoms())
def test_validity_does_not_depend_on_creation_order(
    tries: list[tuple[str, int]], rnd: random.Random
) -> None:
    placed: list[MigInstance] = []
    for name, start in tries:
        prof = H100.profile(name)
        assert prof is not None
        if placement_violation(placed, prof, start) is None:
            placed.append(MigInstance(profile=prof, placement=Placement(start, prof.memory_slices)))
    shuffled = list(placed)
    rnd.shuffle(shuffled)
    assert layout_is_valid(shuffled)


def test_placement_overlap_is_symmetric_and_exact() -> None:
    for a, b in itertools.product(range(8), repeat=2):
        for sa, sb in itertools.product((1, 2, 4), repeat=2):
            pa, pb = Placement(a, sa), Placement(b, sb)
            expected = bool(set(pa.slices) & set(pb.slices))
            assert pa.overlaps(pb) is expected is pb.overlaps(pa)
