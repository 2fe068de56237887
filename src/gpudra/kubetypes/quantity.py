"""Kubernetes ``resource.Quantity`` values in pure Python, as the CEL selectors see them.

Parsing follows ``k8s.io/apimachinery/pkg/api/resource.ParseQuantity`` (v0.34-v0.37) rule for
rule, quirks included: ``"Mi"`` is 0 but ``"Pi"`` is an error, a finer value than nano is rounded
away from zero to ``1n``, a binary-suffixed value is capped at 2^63-1, a decimal one is not, and a
decimal exponent is truncated to int32 as Go does.

Key decision: a `Quantity` is its exact value (``mantissa * 10**exponent``, normalised), not
the Go representation (``int64Amount`` or ``inf.Dec``).  Comparison, equality, sign, addition
and subtraction only depend on the value and match upstream exactly.  ``isInteger``/
``asInteger`` upstream also depend on the representation (``quantity("2000m").isInteger()`` and
``quantity("1.5Gi").isInteger()`` are false there, because the first keeps scale -3 and the second
is an ``inf.Dec``); here they are true for any integral value within int64.  Equal values must be
equal objects for CEL's ``==``, which is why the representation is not kept.  For the same reason
``as_approximate_float`` may differ from upstream in the last bit beyond 15 significant digits.
Numbers longer than 1,000 digits, and sums of values whose exponents lie more than 1,000 apart,
are refused: upstream materialises such integers and stalls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from gpudra.common.errors import GpudraError

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
_FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_DIGITS = frozenset("0123456789")
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_GO_INT = re.compile(r"[+-]?[0-9]+")
# Limits upstream does not have, so that absurd values fail instead of hanging (upstream
# materialises 10**exponent to align two exponents) or hitting Python's int/str digit limit.
MAX_ALIGNMENT_DIGITS = 1_000
MAX_MANTISSA_BITS = 12_000  # about 3,600 digits


class QuantityError(GpudraError, ValueError):
    """The text is not a Kubernetes quantity, or arithmetic on quantities is out of range."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact decimal value ``mantissa * 10**exponent``; ``mantissa`` has no trailing zeros
    (0 is ``Quantity(0, 0)``), so equal values are equal objects."""

    mantissa: int
    exponent: int

    @staticmethod
    def of(mantissa: int, exponent: int = 0) -> Quantity:
        """The normalised quantity of ``mantissa * 10**exponent``."""
        if mantissa == 0:
            return Quantity(0, 0)
        if abs(mantissa).bit_length() > MAX_MANTISSA_BITS:
            raise QuantityError("quantity out of range")
        digits = str(abs(mantissa))
        stripped = digits.rstrip("0")
        trailing = len(digits) - len(stripped)
        if trailing:
            mantissa = int(stripped) if mantissa > 0 else -int(stripped)
        return Quantity(mantissa, exponent + trailing)

    @staticmethod
    def parse(text: str) -> Quantity:
        """Parse like ``resource.ParseQuantity``; raises `QuantityError` with its message."""
        return parse_quantity(text)

    @property
    def sign(self) -> int:
        return (self.mantissa > 0) - (self.mantissa < 0)

    def compare(self, other: Quantity) -> int:
        """-1, 0 or 1, like ``Quantity.Cmp``."""
        if self.sign != other.sign:
            return -1 if self.sign < other.sign else 1
        if self.sign == 0:
            return 0
        a, b = abs(self.mantissa), abs(other.mantissa)
        order_a, order_b = len(str(a)) + self.exponent, len(str(b)) + other.exponent
        if order_a != order_b:
            result = 1 if order_a > order_b else -1
        else:  # same order of magnitude: the exponents differ by at most the digit counts
            low = min(self.exponent, other.exponent)
            a, b = a * 10 ** (self.exponent - low), b * 10 ** (other.exponent - low)
            result = (a > b) - (a < b)
        return result * self.sign

    def __lt__(self, other: Quantity) -> bool:
        return self.compare(other) < 0

    def __le__(self, other: Quantity) -> bool:
        return self.compare(other) <= 0

    def __gt__(self, other: Quantity) -> bool:
        return self.compare(other) > 0

    def __ge__(self, other: Quantity) -> bool:
        return self.compare(other) >= 0

    def __add__(self, other: Quantity) -> Quantity:
        if other.mantissa == 0:
            return self
        if self.mantissa == 0:
            return other
        low = min(self.exponent, other.exponent)
        if max(self.exponent, other.exponent) - low > MAX_ALIGNMENT_DIGITS:
            raise QuantityError("quantity arithmetic out of range")
        a = self.mantissa * 10 ** (self.exponent - low)
        return Quantity.of(a + other.mantissa * 10 ** (other.exponent - low), low)

    def __sub__(self, other: Quantity) -> Quantity:
        return self + Quantity(-other.mantissa, other.exponent)

    def as_int64(self) -> int | None:
        """The value as an int64, or None when it is fractional or out of range."""
        if self.mantissa == 0:
            return 0
        if self.exponent < 0 or len(str(abs(self.mantissa))) + self.exponent > 19:
            return None
        value = self.mantissa * 10**self.exponent
        return value if MIN_INT64 <= value <= MAX_INT64 else None

    def as_approximate_float(self) -> float:
        """Like ``AsApproximateFloat64``: the mantissa as a float times ``math.Pow10``."""
        try:
            base = float(self.mantissa)
        except OverflowError:
            base = float("inf") if self.mantissa > 0 else float("-inf")
        if self.exponent == 0:
            return base
        return base * _pow10(self.exponent)


def is_quantity(text: str) -> bool:
    """Whether `parse_quantity` accepts ``text`` (CEL's ``isQuantity``)."""
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def exact(q: Quantity) -> Fraction:
    """The value as a fraction, for arithmetic beyond addition (ratios, steps, rounding)."""
    return Fraction(q.mantissa) * Fraction(10) ** q.exponent


def from_exact(value: Fraction) -> Quantity:
    """The quantity of an exact value with a finite decimal expansion (what arithmetic on
    quantities produces)."""
    exponent = 0
    while value.denominator != 1:
        value *= 10
        exponent -= 1
    return Quantity.of(value.numerator, exponent)


def _pow10(exponent: int) -> float:
    """Go's ``math.Pow10``: exact powers, 0 below 1e-323 and +Inf above 1e308."""
    if exponent > 308:
        return float("inf")
    if exponent < -323:
        return 0.0
    return float(f"1e{exponent}")


def _scan(text: str) -> tuple[bool, str, str, str, str]:
    """Port of ``parseQuantityString``: (positive, value, numerator, denominator, suffix)."""
    positive, pos, end = True, 0, len(text)
    if end and text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end:
        if text[pos] not in _DIGITS:
            raise QuantityError(_FORMAT_WRONG)
        pos += 1
    return positive, value, num, denom, text[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int]:
    """(base, exponent) of a suffix, like ``quantitySuffixer.interpret``."""
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix]
    if suffix in _BINARY:
        return 2, _BINARY[suffix]
    if len(suffix) > 1 and suffix[0] in "eE" and _GO_INT.fullmatch(suffix[1:]):
        parsed = int(suffix[1:])
        if MIN_INT64 <= parsed <= MAX_INT64:
            return 10, (parsed + 2**31) % 2**32 - 2**31  # Go's int32(parsed)
    raise QuantityError("unable to parse quantity's suffix")


def parse_quantity(text: str) -> Quantity:
    """Parse ``text`` exactly like ``resource.ParseQuantity``."""
    if not text:
        raise QuantityError(_FORMAT_WRONG)
    positive, value, num, denom, suffix = _scan(text)
    base, exponent = _interpret(suffix)
    if len(num) + len(denom) > MAX_ALIGNMENT_DIGITS:
        raise QuantityError("unable to parse numeric part of quantity")
    digits = int(num + denom)
    if base == 10:
        slow = exponent - len(denom) < -9 or len(num) + len(denom) > 18
        result = Quantity.of(digits, exponent - len(denom))
    else:
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
        slow = bool(denom) or precision < 0
        result = Quantity.of(digits * 2**exponent, -len(denom))
    if slow and not any(c in _DIGITS for c in value):
        raise QuantityError("unable to parse numeric part of quantity")
    if result.exponent < -9:  # round away from zero to nano
        shift = -9 - result.exponent
        mantissa = result.mantissa
        kept = 0 if shift >= len(str(mantissa)) else mantissa // 10**shift
        result = Quantity.of(kept + 1, -9)
    if base == 2 and result.compare(Quantity.of(MAX_INT64)) > 0:
        result = Quantity.of(MAX_INT64)
    return result if positive else Quantity(-result.mantissa, result.exponent)
