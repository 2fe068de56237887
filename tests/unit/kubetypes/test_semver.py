"""Semantic versions as the Kubernetes CEL semver library parses and orders them."""

from __future__ import annotations

import pytest

from gpudra.kubetypes.semver import Semver, SemverError

# The precedence example of semver.org 2.0.0, lowest first.
PRECEDENCE = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "2.0.0",
    "580.82.7",
]


def test_precedence() -> None:
    versions = [Semver.parse(v) for v in PRECEDENCE]
    for i, low in enumerate(versions):
        for high in versions[i + 1 :]:
            assert (low.compare(high), high.compare(low)) == (-1, 1), (low, high)


def test_build_metadata_is_ignored() -> None:
    a, b = Semver.parse("1.2.3-rc.1+build.5"), Semver.parse("1.2.3-rc.1")
    assert a == b
    assert a.compare(b) == 0
    assert a.build == ("build", "5")
    assert str(a) == "1.2.3-rc.1+build.5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Version string empty"),
        ("1.2", "No Major.Minor.Patch"),
        ("v1.2.3", "Invalid character(s) found in major number"),
        ("01.2.3", "Major number must not contain leading zeroes"),
        ("1.02.3", "Minor number must not contain leading zeroes"),
        ("1.2.03", "Patch number must not contain leading zeroes"),
        ("1.2.3-", "Prerelease is empty"),
        ("1.2.3-01", "Numeric PreRelease version must not contain leading zeroes"),
        ("1.2.3-a_b", "Invalid character(s) found in prerelease"),
        ("1.2.3+", "Build meta data is empty"),
        ("1..3", "invalid minor number"),
        ("18446744073709551616.0.0", "invalid major number"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(SemverError) as info:
        Semver.parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.2.3", "1.2.3"),
        ("1.02", "1.2.0"),
        ("v1", "1.0.0"),
        ("00.0.010", "0.0.10"),
        ("1.2.3-rc.1", "1.2.3-rc.1"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert Semver.parse(text, normalize=True) == Semver.parse(expected)


def test_normalize_refuses_short_prerelease() -> None:
    with pytest.raises(SemverError, match="short version"):
        Semver.parse("1.2-rc", normalize=True)
