"""Find allocations for a set of claims on one node: the scheduler's semantics, exhaustively.

Depth-first over claims -> requests -> device slots, like kube-scheduler's structured
allocator, but over *combinations* (a request's devices in increasing candidate order, never
permutations), with matchAttribute pruning (candidates are split by the attribute's value
and groups too small for the request are skipped), counting bounds before each request's
combinations (``allocation.counting``: a request no choice can fill is refused without
trying them) and counter checks on each add.  A device with ``allowMultipleAllocations``
(consumable capacity, ``allocation.capacity``) is never taken: each choice of it is one more
share, which must fit in the capacity its other shares leave, and only its first share draws
its counters.  Yields
every complete solution in first-fit order, so the first one is what the scheduler would
pick, and a scorer can look further.  Every rejection is recorded for explanations.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gpudra.allocation.capacity import consumption, refusal, wire
from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.counting import shortfall
from gpudra.allocation.inputs import Claim, Constraint, Device, Request
from gpudra.api.claim import DeviceRequestAllocationResult
from gpudra.api.deviceclass import class_selectors
from gpudra.common.errors import GpudraError
from gpudra.kubetypes.quantity import Quantity
from gpudra.kubetypes.tolerations import untolerated

Matcher = Callable[[str, Device], tuple[bool, str | None]]  # (expression, device) -> verdict
DeviceFilter = Callable[[Device], str | None]  # extra rule: a reason to skip the device, or None

ZERO = Quantity.of(0)


IN_USE = "already allocated"


def new_share_id() -> str:
    """A share's UID (``shareID``), random like the scheduler's ``uuid.NewUUID``."""
    return str(uuid.uuid4())


class RejectionKind(enum.Enum):
    UNSUITABLE = "unsuitable"  # filtered out, not in the class, a false selector, a taint
    IN_USE = "in use"  # allocated to another claim (allocationMode All must not proceed)
    SELECTOR_ERROR = "selector error"  # a selector failed at run time (see SelectorError)


@dataclass(frozen=True)
class Rejection:
    """Why a device is no candidate for a request: the sentence for explanations, and what
    kind of no it is (a selector error is a candidate that aborts the node when reached)."""

    reason: str
    kind: RejectionKind = RejectionKind.UNSUITABLE


class SelectorError(GpudraError):
    """A selector failed at run time on a device the search reached: kube-scheduler treats
    this as an error for the whole pod (SchedulerError), so gpudra does too."""


class BudgetExceeded(GpudraError):
    """The search tried more device placements than it may; treated as 'not found here'."""


@dataclass(frozen=True)
class Choice:
    claim: Claim
    request: Request
    device: Device
    # one share of a shareable device: what it takes of each capacity (None: the whole device)
    consumed: tuple[tuple[str, Quantity], ...] | None = None


@dataclass
class Solution:
    node: str
    choices: tuple[Choice, ...]

    def devices_of(self, claim: Claim) -> list[Device]:
        return [c.device for c in self.choices if c.claim is claim]

    def results(
        self, claim: Claim, share_id: Callable[[], str] | None = None
    ) -> list[DeviceRequestAllocationResult]:
        """The claim's ``status.allocation.devices.results`` entries (``share_id``: a new
        UID for each share of a shareable device).  ``claim`` is the very object the solution
        was found for (claims are told apart by identity); another one is a ValueError."""
        out = []
        for c in self.choices:
            if c.claim is not claim:
                continue
            r: DeviceRequestAllocationResult = {
                "request": c.request.name,
                "driver": c.device.driver,
                "pool": c.device.pool,
                "device": c.device.name,
            }
            if c.request.admin_access:
                r["adminAccess"] = True
            if c.request.tolerations:
                r["tolerations"] = [t.to_wire() for t in c.request.tolerations]
            if c.consumed is not None:
                r["shareID"] = (share_id or new_share_id)()
                if c.consumed:
                    r["consumedCapacity"] = {n: wire(q) for n, q in c.consumed}
            out.append(r)
        if not out:  # every request of a claim in a solution has a device
            raise ValueError(f"claim {claim.ref} is not one this solution was found for")
        return out


@dataclass
class Diagnosis:
    """Why requests could not be satisfied on one node (filled while searching)."""

    node: str
    rejected: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    shortfalls: dict[str, str] = field(default_factory=dict)
    total_devices: int = 0
    gave_up: str = ""
    selector_error: str = ""

    def reject(self, request: str, reason: str) -> None:
        self.rejected[request][reason] += 1


class NodeSearch:
    def __init__(
        self,
        view: ClusterView,
        node: str,
        claims: list[Claim],
        *,
        matcher: Matcher,
        budget: int = 200_000,
        device_filter: DeviceFilter | None = None,
    ) -> None:
        self.view = view
        self.node = node
        self.claims = claims
        self.matcher = matcher
        self.device_filter = device_filter
        self.budget = budget
        self.steps = 0
        self.devices = view.devices_for(node)
        self.diag = Diagnosis(node=node, total_devices=len(self.devices))
        self._cands: dict[tuple[int, str], list[Device]] = {}
        self._busy: dict[tuple[int, str], list[Device]] = defaultdict(list)
        self._errored: dict[tuple[str, str, str], str] = {}
        self._found_any = False
        self._chosen: list[Choice] = []
        self._taken: set[tuple[str, str, str]] = set()
        self._counters: dict[tuple[str, str, str], dict[str, Quantity]] = {}
        self._avail: dict[tuple[str, str, str], dict[str, Quantity]] = {}
        self._match: dict[tuple[int, int], tuple[str, Any]] = {}
        self._distinct: dict[tuple[int, int], set[Any]] = defaultdict(set)
        self._shares: Counter[tuple[str, str, str]] = Counter()  # shares chosen per device
        self._allocating: dict[tuple[str, str, str], dict[str, Quantity]] = {}

    # --- candidates --------------------------------------------------------------------

    def candidates(self, ci: int, req: Request) -> list[Device]:
        key = (ci, req.name)
        if key in self._cands:
            return self._cands[key]
        cls = self.view.classes.get(req.device_class)
        out: list[Device] = []
        if cls is None:
            self.diag.shortfalls[req.name] = f"device class {req.device_class!r} does not exist"
            self._cands[key] = out
            return out
        class_exprs = class_selectors(cls)
        for dev in self.devices:
            rejection = self._rejection(dev, req, class_exprs)
            if rejection is None:
                out.append(dev)
                continue
            self.diag.reject(req.name, rejection.reason)
            if rejection.kind is RejectionKind.SELECTOR_ERROR:
                out.append(dev)  # reached in search order, it aborts the node (see _pick)
                self._errored[dev.key] = rejection.reason
            elif rejection.kind is RejectionKind.IN_USE:
                self._busy[key].append(dev)
        self._cands[key] = out
        return out

    def _rejection(self, dev: Device, req: Request, class_exprs: list[str]) -> Rejection | None:
        if self.device_filter is not None:
            why = self.device_filter(dev)
            if why is not None:
                return Rejection(why)
        busy = not req.admin_access and not dev.multi and dev.key in self.view.in_use
        # the scheduler passes over a device in use before its selectors run, so a selector
        # that fails on it does not fail the pod (allocationMode All runs them on every
        # device); a false selector is still the reason given, it says more
        error = (
            RejectionKind.IN_USE if busy and not req.all_devices else RejectionKind.SELECTOR_ERROR
        )
        for expr in class_exprs:
            ok, err = self.matcher(expr, dev)
            if err:
                if error is RejectionKind.IN_USE:
                    return Rejection(IN_USE, error)
                return Rejection(
                    f"class {req.device_class} selector failed on {dev.name}: {err}", error
                )
            if not ok:
                return Rejection(f"not in class {req.device_class}")
        for expr in req.selectors:
            ok, err = self.matcher(expr, dev)
            if err:
                if error is RejectionKind.IN_USE:
                    return Rejection(IN_USE, error)
                return Rejection(f"selector {expr!r} failed on {dev.name}: {err}", error)
            if not ok:
                return Rejection(f"selector {expr!r} is false")
        taint = untolerated(dev.taints, req.tolerations)
        if taint is not None:
            since = f" since {taint['timeAdded']}" if taint.get("timeAdded") else ""
            return Rejection(
                f"{dev.name} is tainted {taint.get('key')}={taint.get('value', '')}:"
                f"{taint['effect']}{since} (not tolerated)"
            )
        if busy:
            return Rejection(IN_USE, RejectionKind.IN_USE)
        asked = req.capacity_requests
        if not asked and not dev.multi:
            return None  # a plain device and no capacity asked: nothing to check
        why = refusal(asked, dev.capacity, multi=dev.multi)
        if why is not None:
            return Rejection(f"{dev.name} {why}")
        if dev.multi and self.view.shared(dev.key):
            why = refusal(asked, dev.capacity, multi=True, used=self.view.shares_used[dev.key])
            if why is not None:  # the capacity is taken: allocationMode All must not proceed
                return Rejection(f"{dev.name} {why}", RejectionKind.IN_USE)
        return None

    def _drawn(self, dev: Device) -> bool:
        """A shareable device already has a share, which drew its counters."""
        return dev.multi and (self._shares[dev.key] > 0 or self.view.shared(dev.key))

    def _used(self, dev: Device) -> dict[str, Quantity]:
        """What the shares of a device take: allocated ones and those chosen so far."""
        used = dict(self.view.shares_used.get(dev.key) or {})
        for name, amount in (self._allocating.get(dev.key) or {}).items():
            used[name] = used.get(name, ZERO) + amount
        return used

    # --- constraints and counters ---------------------------------------------------------

    def _constraints(self, ci: int, req: Request) -> list[tuple[int, Constraint]]:
        return [(k, c) for k, c in enumerate(self.claims[ci].constraints) if c.applies_to(req.name)]

    def _fits(self, ci: int, req: Request, dev: Device) -> bool:
        for k, c in self._constraints(ci, req):
            if c.match_attribute:
                have = dev.attr(c.match_attribute)
                fixed = self._match.get((ci, k))
                if have is None or (fixed is not None and fixed != have):
                    return False
            if c.distinct_attribute:
                have = dev.attr(c.distinct_attribute)
                if have is None or have in self._distinct[(ci, k)]:
                    return False
        if dev.consumes and not req.admin_access and not self._drawn(dev):
            for counter_set, amounts in dev.consumes:
                if any(self._free(dev, counter_set, n) < a for n, a in amounts.items()):
                    return False
        if dev.multi and self._shares[dev.key]:
            asked = req.capacity_requests
            if refusal(asked, dev.capacity, multi=True, used=self._used(dev)) is not None:
                return False
        return True

    def _count(self, dev: Device, sign: int) -> None:
        for counter_set, amounts in dev.consumes:
            taken = self._counters.setdefault((dev.driver, dev.pool, counter_set), {})
            for n, a in amounts.items():
                taken[n] = taken.get(n, ZERO) + a if sign > 0 else taken.get(n, ZERO) - a

    def _add(self, ci: int, req: Request, dev: Device) -> list[tuple[int, int]]:
        fixed_here = []
        for k, c in self._constraints(ci, req):
            if c.match_attribute and (ci, k) not in self._match:
                self._match[(ci, k)] = dev.attrs[c.match_attribute]
                fixed_here.append((ci, k))
            if c.distinct_attribute:
                self._distinct[(ci, k)].add(dev.attrs[c.distinct_attribute])
        consumed = None
        if dev.multi:
            amounts = consumption(req.capacity_requests, dev.capacity)
            consumed = tuple(sorted(amounts.items()))
            if not req.admin_access and not self._drawn(dev):
                self._count(dev, +1)
            self._shares[dev.key] += 1
            mine = self._allocating.setdefault(dev.key, {})
            for name, amount in amounts.items():
                mine[name] = mine.get(name, ZERO) + amount
        else:
            self._taken.add(dev.key)
            if not req.admin_access:
                self._count(dev, +1)
        self._chosen.append(Choice(self.claims[ci], req, dev, consumed))
        return fixed_here

    def _remove(self, ci: int, req: Request, dev: Device, fixed: list[tuple[int, int]]) -> None:
        choice = self._chosen.pop()
        if choice.consumed is not None:
            self._shares[dev.key] -= 1
            mine = self._allocating[dev.key]
            for name, amount in choice.consumed:
                mine[name] = mine[name] - amount
            if not self._shares[dev.key]:
                del self._shares[dev.key], self._allocating[dev.key]
            if not req.admin_access and not self._drawn(dev):
                self._count(dev, -1)
        else:
            self._taken.discard(dev.key)
            if not req.admin_access:
                self._count(dev, -1)
        for key in fixed:
            del self._match[key]
        for k, c in self._constraints(ci, req):
            if c.distinct_attribute:
                self._distinct[(ci, k)].discard(dev.attrs[c.distinct_attribute])

    # --- search --------------------------------------------------------------------------

    def solutions(self) -> Iterator[Solution]:
        yield from self._claim(0, 0)

    def _claim(self, ci: int, ri: int) -> Iterator[Solution]:
        if ci == len(self.claims):
            self._found_any = True
            yield Solution(node=self.node, choices=tuple(self._chosen))
            return
        claim = self.claims[ci]
        if ri == len(claim.requests):
            yield from self._claim(ci + 1, 0)
            return
        for req in claim.requests[ri].alternatives:  # firstAvailable: in order
            cands = [d for d in self.candidates(ci, req) if d.key not in self._taken]
            if req.all_devices:
                yield from self._all(ci, ri, req, cands)
                continue
            if len(cands) < req.count:
                self.diag.shortfalls.setdefault(
                    req.name, f"needs {req.count} device(s), {len(cands)} remain after filtering"
                )
                continue
            for group in self._groups(ci, req, cands):
                why = self._bound(ci, req, group)
                if why is not None:
                    self.diag.shortfalls.setdefault(req.name, why)
                    continue
                yield from self._pick(ci, ri, req, group, start=0, need=req.count)

    def _bound(self, ci: int, req: Request, group: list[Device]) -> str | None:
        """Why no ``req.count`` of ``group`` can be chosen now, by counting (None: search)."""
        if any(d.key in self._errored for d in group):
            return None  # first-fit reaches the failing selector: the search must raise it
        cons = self._constraints(ci, req)
        return shortfall(
            req.count,
            [d for d in group if self._fits(ci, req, d)],
            candidates=len(group),
            distinct=[c.distinct_attribute for _, c in cons if c.distinct_attribute],
            match=[
                c.match_attribute
                for k, c in cons
                if c.match_attribute and (ci, k) not in self._match
            ],
            free=None if req.admin_access else self._free,
            drawn=self._drawn,
        )

    def _free(self, dev: Device, counter_set: str, counter: str) -> Quantity:
        """What is free of one counter of the device's pool, after the choices made so far."""
        key = (dev.driver, dev.pool, counter_set)
        avail = self._avail.get(key)
        if avail is None:  # the view's usage does not change during a search
            avail = self._avail[key] = self.view.available_counters(dev, counter_set)
        left, taken = avail.get(counter, ZERO), self._counters.get(key)
        return left if not taken else left - taken.get(counter, ZERO)

    def _groups(self, ci: int, req: Request, cands: list[Device]) -> Iterator[list[Device]]:
        """Split candidates by the first unfixed matchAttribute, dropping too-small groups."""
        for k, c in self._constraints(ci, req):
            if not c.match_attribute or (ci, k) in self._match:
                continue
            groups: dict[tuple[str, Any], list[Device]] = {}
            errored = [d for d in cands if d.key in self._errored]
            for d in cands:
                v = d.attr(c.match_attribute)
                if v is not None and d.key not in self._errored:
                    groups.setdefault(v, []).append(d)
            if errored:  # the scheduler reaches them while scanning, whatever their value
                order = {d.key: i for i, d in enumerate(cands)}
                for g in groups.values():
                    g.extend(errored)
                    g.sort(key=lambda d: order[d.key])
            big = [g for g in groups.values() if len(g) >= req.count]
            if not big:
                largest = max((len(g) for g in groups.values()), default=0)
                self.diag.shortfalls.setdefault(
                    req.name,
                    f"no {req.count} candidate devices share one value of "
                    f"{c.match_attribute} (largest such set: {largest})",
                )
            yield from big
            return
        yield cands

    def _pick(
        self, ci: int, ri: int, req: Request, cands: list[Device], *, start: int, need: int
    ) -> Iterator[Solution]:
        if need == 0:
            yield from self._claim(ci, ri + 1)
            return
        for j in range(start, len(cands) - need + 1):
            dev = cands[j]
            self.steps += 1
            if self.steps > self.budget:
                raise BudgetExceeded(f"gave up after {self.budget} placement attempts")
            if dev.key in self._errored:
                if not self._found_any:  # the scheduler's first-fit search would hit it
                    raise SelectorError(self._errored[dev.key])
                continue
            if dev.key in self._taken or not self._fits(ci, req, dev):
                continue
            fixed = self._add(ci, req, dev)
            try:
                yield from self._pick(ci, ri, req, cands, start=j + 1, need=need - 1)
            finally:
                self._remove(ci, req, dev, fixed)
        if start == 0:
            self.diag.shortfalls.setdefault(
                req.name, f"no {need} candidates satisfy the constraints and counters together"
            )

    def _all(self, ci: int, ri: int, req: Request, cands: list[Device]) -> Iterator[Solution]:
        busy = self._busy[(ci, req.name)]
        if not cands and not busy:
            self.diag.shortfalls.setdefault(req.name, "allocationMode All matched no device")
            return
        err = next((self._errored[d.key] for d in cands if d.key in self._errored), None)
        if err is not None:
            raise SelectorError(err)
        pools = {(d.driver, d.pool) for d in cands}
        if any(not p.complete for p in self.view.pools if (p.driver, p.name) in pools):
            self.diag.shortfalls.setdefault(req.name, "allocationMode All needs complete pools")
            return
        if busy:
            self.diag.shortfalls.setdefault(
                req.name, f"allocationMode All: {len(busy)} matching device(s) already allocated"
            )
            return
        added: list[tuple[Device, list[tuple[int, int]]]] = []
        try:
            for dev in cands:
                if not self._fits(ci, req, dev):
                    self.diag.shortfalls.setdefault(
                        req.name, f"device {dev.name} breaks a constraint or counter"
                    )
                    return
                added.append((dev, self._add(ci, req, dev)))
            yield from self._claim(ci, ri + 1)
        finally:
            for dev, fixed in reversed(added):
                self._remove(ci, req, dev, fixed)
