"""Consumable capacity (KEP-5075): what a request takes of a shareable device (pure).

A device with ``allowMultipleAllocations: true`` can be allocated to several claims; each
allocation (a *share*) consumes part of the device's capacities, and the shares together may
not exceed them.  The rules are kube-scheduler's (``k8s.io/dynamic-resource-allocation``
``structured/internal/incubating/consumable_capacity.go``, v0.37), rule for rule:

- every capacity of the device is consumed, not only the ones a request names: a request that
  names it takes its amount rounded up by the capacity's ``requestPolicy`` (``validRange``: to
  ``min`` at least, then to the next ``step`` from ``min``; ``validValues``: to the smallest
  valid value not below it); one that does not takes the policy's ``default``, or without a
  policy the whole capacity;
- the amount must then satisfy the policy (at most ``max``, on a step, one of the valid
  values; the default always does), and fit in what the other shares left;
- a request naming a capacity the device does not have never gets the device;
- on a device without ``allowMultipleAllocations`` the same arithmetic is a filter only: the
  amount must not exceed the capacity (nothing is consumed, the device is allocated whole).

Amounts are exact (fractions), which is what the scheduler's integer and milli-value paths
compute for every value they can represent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gpudra.kubetypes.quantity import (
    Quantity,
    QuantityError,
    exact,
    from_exact,
    parse_quantity,
)

Amounts = Mapping[str, Quantity]  # capacity name -> amount


@dataclass(frozen=True)
class Policy:
    """A capacity's ``requestPolicy``: ``default`` and ``validRange`` or ``validValues``."""

    default: Quantity | None = None
    valid_values: tuple[Quantity, ...] = ()
    minimum: Quantity | None = None
    maximum: Quantity | None = None
    step: Quantity | None = None


@dataclass(frozen=True)
class Capacity:
    value: Quantity
    policy: Policy | None = None


def _q(raw: Any, where: str) -> Quantity:
    try:
        return parse_quantity(str(raw))
    except QuantityError as e:
        raise ValueError(f"{where}: {e}") from e


def parse_capacities(raw: Mapping[str, Any] | None) -> dict[str, Capacity]:
    """A slice device's ``capacity`` map (ValueError for a value that is no quantity)."""
    out: dict[str, Capacity] = {}
    for name, body in (raw or {}).items():
        value = _q(body.get("value", "0"), f"capacity {name}")
        rp = body.get("requestPolicy")
        policy = None
        if rp:
            rng = rp.get("validRange") or {}
            policy = Policy(
                default=_q(rp["default"], f"{name}.default") if "default" in rp else None,
                valid_values=tuple(
                    _q(v, f"{name}.validValues") for v in rp.get("validValues") or ()
                ),
                minimum=_q(rng["min"], f"{name}.min") if "min" in rng else None,
                maximum=_q(rng["max"], f"{name}.max") if "max" in rng else None,
                step=_q(rng["step"], f"{name}.step") if "step" in rng else None,
            )
        out[name] = Capacity(value, policy)
    return out


def consumed(requested: Quantity | None, cap: Capacity) -> Quantity:
    """What a request takes of one capacity (``calculateConsumedCapacity``)."""
    policy = cap.policy
    if requested is None:
        return policy.default if policy is not None and policy.default is not None else cap.value
    if policy is None:
        return requested
    if policy.minimum is not None:
        if requested < policy.minimum:
            return policy.minimum
        if policy.step is None:
            return requested
        lo, step = exact(policy.minimum), exact(policy.step)
        n = -((lo - exact(requested)) // step)  # ceil((requested - min) / step)
        return from_exact(lo + n * step)
    if policy.valid_values:
        return next((v for v in policy.valid_values if requested <= v), requested)
    return requested


def violates(amount: Quantity, policy: Policy | None) -> bool:
    """The amount breaks the policy (``violatesPolicy``): the default never does."""
    if policy is None or (policy.default is not None and amount == policy.default):
        return False
    if policy.minimum is not None or policy.maximum is not None or policy.step is not None:
        if policy.maximum is not None and amount > policy.maximum:
            return True
        if policy.step is not None:
            lo = exact(policy.minimum) if policy.minimum is not None else Fraction(0)
            return (exact(amount) - lo) % exact(policy.step) != 0
        return False
    if policy.valid_values:
        return amount not in policy.valid_values
    return False


def consumption(requests: Amounts, caps: Mapping[str, Capacity]) -> dict[str, Quantity]:
    """What one share takes of every capacity of the device."""
    return {name: consumed(requests.get(name), cap) for name, cap in caps.items()}


def text(q: Quantity) -> str:
    """A quantity as a person reads it: bytes in Mi/Gi when they divide evenly."""
    value = exact(q)
    if value.denominator == 1 and value >= 1 << 20:
        for suffix, unit in (("Gi", 1 << 30), ("Mi", 1 << 20)):
            if value % unit == 0:
                return f"{value // unit}{suffix}"
    return wire(q)


def wire(q: Quantity) -> str:
    """A quantity in the canonical form the API accepts (integers plain, else milli, micro
    or nano)."""
    value = exact(q)
    for suffix, scale in (("", 1), ("m", 1000), ("u", 10**6), ("n", 10**9)):
        scaled = value * scale
        if scaled.denominator == 1:
            return f"{scaled.numerator}{suffix}"
    return f"{-(-value.numerator * 10**9 // value.denominator)}n"


def refusal(
    requests: Amounts,
    caps: Mapping[str, Capacity],
    *,
    multi: bool,
    used: Amounts | None = None,
) -> str | None:
    """Why the device cannot take the request now, or None.  ``used``: what its other shares
    (allocated, or chosen earlier in this search) already consume."""
    missing = sorted(n for n in requests if n not in caps)
    if missing:
        return f"has no capacity {', '.join(missing)}"
    used = used or {}
    for name, cap in sorted(caps.items()):
        amount = consumed(requests.get(name), cap)
        if violates(amount, cap.policy):
            return f"capacity {name}: {text(amount)} is not allowed by its request policy"
        if not multi:
            if amount > cap.value:
                return f"capacity {name} is {text(cap.value)}, less than the {text(amount)} asked"
            continue
        taken = used.get(name)
        if (amount if taken is None else taken + amount) > cap.value:
            left = cap.value if taken is None else cap.value - taken
            return (
                f"capacity {name}: the share needs {text(amount)}, {text(left)} of "
                f"{text(cap.value)} left"
            )
    return None
