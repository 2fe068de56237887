"""Counting bounds that refuse a request before the combination search tries it (pure).

The search proves a request unplaceable only by trying every combination: 9 x 1g.10gb with
distinct parent GPUs on an 8-GPU dynamic-MIG node is 7^8 partial placements, so it burned the
whole step budget on every node in every pass.  Each bound here is a necessary condition,
checked on the devices that could be added now (each fits the constraints and counters on its
own).  Choices only add to what is taken, so a device that does not fit now cannot fit deeper
in the same branch: failing a bound proves the branch holds no solution, and the search skips
it with the reason.  Passing every bound proves nothing; the search then runs as before.

- pigeonhole on devices: fewer fitting devices than the request needs;
- pigeonhole on values: fewer distinct values of a ``distinctAttribute`` than needed, or no
  value of a still unfixed ``matchAttribute`` shared by enough devices;
- counters, one at a time: the ``need`` smallest demands on a counter exceed what is free;
- counters, together: each device's demands divided by what is free of each counter and
  summed; the ``need`` smallest sums may not exceed the number of counters drawn on (the sum
  of the per-counter inequalities, each divided by what is free).  Exact (fractions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from fractions import Fraction

from gpudra.allocation.inputs import Device
from gpudra.kubetypes.quantity import Quantity, exact

Free = Callable[[Device, str, str], Quantity]  # (device, counter set, counter) -> what is free
CounterId = tuple[str, str, str, str]  # driver, pool, counter set, counter


def _text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def shortfall(
    need: int,
    fitting: list[Device],
    *,
    candidates: int,
    distinct: list[str],
    match: list[str],
    free: Free | None,
    drawn: Callable[[Device], bool] | None = None,
) -> str | None:
    """Why ``need`` of the ``fitting`` devices cannot be chosen together, or None.

    ``candidates``: how many the request matched before the choices already made;
    ``distinct``/``match``: the request's distinctAttribute and unfixed matchAttribute names;
    ``free``: what is free of one counter of a device's pool (None: counters do not apply,
    as for admin access); ``drawn``: a shareable device whose counters an earlier share drew
    already (it demands nothing of them now).
    """
    if len(fitting) < need:
        return (
            f"needs {need} device(s); {len(fitting)} of its {candidates} candidate(s) fit "
            "the constraints and counters left"
        )
    for attr in distinct:
        values = {d.attr(attr) for d in fitting}
        if len(values) < need:
            return (
                f"needs {need} devices with distinct {attr}; the {len(fitting)} candidates "
                f"that fit have {len(values)} value(s)"
            )
    for attr in match:
        largest = max(Counter(d.attr(attr) for d in fitting).values())
        if largest < need:
            return (
                f"no {need} candidate devices share one value of {attr} "
                f"(largest such set: {largest})"
            )
    if free is None:
        return None
    charged = [d for d in fitting if drawn is None or not drawn(d)]
    return _counters(need - (len(fitting) - len(charged)), charged, free)


def _counters(need: int, fitting: list[Device], free: Free) -> str | None:
    """``need``: how many of ``fitting`` must be added (the candidates that demand no
    counters, shares of a device whose counters are drawn already, fill the rest)."""
    if need <= 0:
        return None
    rest: dict[CounterId, Fraction] = {}
    demands: list[dict[CounterId, Fraction]] = []
    for dev in fitting:
        demand: dict[CounterId, Fraction] = {}
        for counter_set, amounts in dev.consumes:
            for name, amount in amounts.items():
                if amount.sign > 0:
                    cid = (dev.driver, dev.pool, counter_set, name)
                    # the largest entry, not the sum: the search checks entries one by one
                    demand[cid] = max(demand.get(cid, Fraction(0)), exact(amount))
                    if cid not in rest:
                        rest[cid] = exact(free(dev, counter_set, name))
        demands.append(demand)
    for cid, left in sorted(rest.items()):
        least = sum(sorted(d.get(cid, Fraction(0)) for d in demands)[:need], Fraction(0))
        if least > left:
            _, _, counter_set, name = cid
            return (
                f"needs {need} device(s); counter {name} of {counter_set} has {_text(left)} "
                f"free and the {need} smallest demands on it add up to {_text(least)}"
            )
    # a device that fits on its own never draws on a counter with nothing free
    shares = sorted(sum(a / rest[c] for c, a in d.items()) for d in demands)
    if sum(shares[:need]) > len(rest):
        room = 0
        while sum(shares[: room + 1]) <= len(rest):
            room += 1
        return (
            f"needs {need} device(s); the {len(rest)} counters the candidates draw on "
            f"(memory slices and the like) have room for at most {room} of them"
        )
    return None
