"""GPU-set settings: parsed once into a typed value, resolved against the node's GPUs."""

from __future__ import annotations

import pytest

from gpudra.catalogue.gpuset import GpuSet


@pytest.mark.parametrize(
    ("text", "count", "want"),
    [
        ("all", 4, {0, 1, 2, 3}),
        ("none", 4, set()),
        ("", 4, set()),
        (None, 4, set()),
        ("4-7", 8, {4, 5, 6, 7}),
        ("0,2,5-6", 8, {0, 2, 5, 6}),
        (" 1 , 3 ", 4, {1, 3}),
    ],
)
def test_parse_and_resolve(text: str | None, count: int, want: set[int]) -> None:
    assert GpuSet.parse(text).resolve(count) == frozenset(want)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("some", "invalid GPU set 'some': use all, none, or indices/ranges like 0,2,4-7"),
        ("0,,1", "invalid GPU set '0,,1'"),
        ("5-3", "range '5-3' is empty"),
        ("-1", "invalid GPU set '-1'"),
    ],
)
def test_bad_syntax_says_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GpuSet.parse(text)


def test_an_index_the_node_lacks_is_refused_with_what_it_has() -> None:
    with pytest.raises(ValueError, match=r"GPU set '2,9' names GPU\(s\) \[9\]; this node has 0..3"):
        GpuSet.parse("2,9").resolve(4)


def test_it_reads_back_as_written() -> None:
    assert str(GpuSet.parse("0,2,5-6")) == "0,2,5-6" and str(GpuSet()) == "none"
