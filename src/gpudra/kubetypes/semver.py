"""Semantic versions as the Kubernetes CEL ``semver`` library sees them.

Parsing and ordering follow ``github.com/blang/semver/v4`` (what ``k8s.io/apiserver``'s semver
library wraps): exactly ``MAJOR.MINOR.PATCH``, no leading zeros, optional ``-prerelease`` and
``+build``; build metadata is ignored by comparison and equality.  ``normalize=True`` is the
library's lenient mode (``semver(s, true)``): a leading ``v``, leading zeros and missing minor or
patch numbers are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpudra.common.errors import GpudraError

_NUMBERS = frozenset("0123456789")
_ALPHANUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789")
_MAX_UINT64 = 2**64 - 1


class SemverError(GpudraError, ValueError):
    """The text is not a semantic version."""


@dataclass(frozen=True, slots=True)
class Semver:
    """A parsed version; ``pre`` holds ints for numeric identifiers.  ``==`` ignores ``build``."""

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    @staticmethod
    def parse(text: str, *, normalize: bool = False) -> Semver:
        """Parse like ``semver.Parse`` (or the library's ``normalizeAndParse``)."""
        return _parse(_normalized(text) if normalize else text)

    def compare(self, other: Semver) -> int:
        """-1, 0 or 1, like ``Version.Compare``."""
        mine, theirs = (self.major, self.minor, self.patch), (other.major, other.minor, other.patch)
        if mine != theirs:
            return 1 if mine > theirs else -1
        if not self.pre or not other.pre:
            return (not self.pre) - (not other.pre)
        for a, b in zip(self.pre, other.pre, strict=False):
            if a == b:
                continue
            if isinstance(a, int) != isinstance(b, int):
                return -1 if isinstance(a, int) else 1
            return 1 if a > b else -1  # type: ignore[operator]
        return (len(self.pre) > len(other.pre)) - (len(self.pre) < len(other.pre))

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(str(p) for p in self.pre)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def is_semver(text: str, normalize: bool = False) -> bool:
    """Whether `Semver.parse` accepts ``text`` (CEL's ``isSemver``)."""
    try:
        Semver.parse(text, normalize=normalize)
    except SemverError:
        return False
    return True


def _number(text: str, what: str) -> int:
    if not set(text) <= _NUMBERS:
        raise SemverError(f"Invalid character(s) found in {what} number {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise SemverError(f"{what.capitalize()} number must not contain leading zeroes {text!r}")
    if not text or int(text) > _MAX_UINT64:
        raise SemverError(f"invalid {what} number {text!r}")
    return int(text)


def _prerelease(text: str) -> int | str:
    if not text:
        raise SemverError("Prerelease is empty")
    if set(text) <= _NUMBERS:
        if len(text) > 1 and text[0] == "0":
            raise SemverError(
                f"Numeric PreRelease version must not contain leading zeroes {text!r}"
            )
        if int(text) > _MAX_UINT64:
            raise SemverError(f"prerelease number out of range {text!r}")
        return int(text)
    if not set(text) <= _ALPHANUM:
        raise SemverError(f"Invalid character(s) found in prerelease {text!r}")
    return text


def _parse(text: str) -> Semver:
    if not text:
        raise SemverError("Version string empty")
    parts = text.split(".", 2)
    if len(parts) != 3:
        raise SemverError("No Major.Minor.Patch elements found")
    major, minor = _number(parts[0], "major"), _number(parts[1], "minor")
    patch_text, build, pre = parts[2], [], []
    if "+" in patch_text:
        patch_text, _, build_text = patch_text.partition("+")
        build = build_text.split(".")
    if "-" in patch_text:
        patch_text, _, pre_text = patch_text.partition("-")
        pre = pre_text.split(".")
    patch = _number(patch_text, "patch")
    prerelease = tuple(_prerelease(p) for p in pre)
    for item in build:
        if not item:
            raise SemverError("Build meta data is empty")
        if not set(item) <= _ALPHANUM:
            raise SemverError(f"Invalid character(s) found in build meta data {item!r}")
    return Semver(major, minor, patch, prerelease, tuple(build))


def _normalized(text: str) -> str:
    """Port of ``normalizeAndParse``'s rewriting step."""
    parts = text.removeprefix("v").split(".", 2)
    for i, part in enumerate(parts):
        if len(part) > 1:
            stripped = part.lstrip("0")
            parts[i] = stripped if stripped[:1] in _NUMBERS else "0" + stripped
    if len(parts) < 3:
        if any(c in parts[-1] for c in "+-"):
            raise SemverError("short version cannot contain PreRelease/Build meta data")
        parts += ["0"] * (3 - len(parts))
    return ".".join(parts)
