"""The allocator: claims + cluster view -> the best feasible assignment, or why there is none.

Pure (no IO).  For every candidate node it runs the exhaustive combination search; in
``first`` mode it stops at the scheduler's own first-fit answer, in ``best`` mode it scores up
to ``max_solutions`` feasible solutions per node and keeps the best and the runner-up.
Selector results are cached per (expression, device, pool generation).  Nodes in the same
state share one search, and a node's failed verdict is remembered across decisions until its
inputs change (``allocation.memo``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gpudra.allocation.cel import CelCompileError, compile_selector, evaluate
from gpudra.allocation.cel import DeviceInput as CelDevice
from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.inputs import Claim, Device, InputError
from gpudra.allocation.memo import (
    REMEMBERED,
    FailedVerdicts,
    claim_expressions,
    failure_key,
    signature,
)
from gpudra.allocation.pools import IgnoredSlices
from gpudra.allocation.score import W_BANDWIDTH, W_LEFT, W_PACK, Score, score
from gpudra.allocation.search import (
    BudgetExceeded,
    DeviceFilter,
    Diagnosis,
    NodeSearch,
    SelectorError,
    Solution,
)
from gpudra.api.claim import AllocationResult
from gpudra.api.deviceclass import class_selectors
from gpudra.kubetypes.nodeselect import node_name_selector


@dataclass(frozen=True)
class Assignment:
    """A scored allocation: one feasible solution (devices on one node) and its score."""

    solution: Solution
    score: Score

    @property
    def node(self) -> str:
        return self.solution.node

    def allocation(
        self, claim: Claim, *, timestamp: str, share_id: Callable[[], str] | None = None
    ) -> AllocationResult:
        """The claim's ``status.allocation`` (RFC 3339 ``timestamp``; ``share_id``: the UID
        of each share of a shareable device, random by default).

        ``allocationTimestamp`` matters: from 1.36 (binding conditions on) kube-scheduler adds
        it to an allocation that lacks it, and the API server refuses that update because an
        allocation is immutable, so the pod would never bind.
        """
        return {
            "devices": {"results": self.solution.results(claim, share_id)},
            "nodeSelector": node_name_selector(self.node),
            "allocationTimestamp": timestamp,
        }


@dataclass
class Outcome:
    best: Assignment | None = None
    runner_up: Assignment | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    nodes_tried: int = 0
    selector_error: str = ""
    ignored: list[IgnoredSlices] = field(default_factory=list)  # slices in no pool, and why
    search_steps: int = 0  # placement attempts made by the searches of this decision
    remembered: int = 0  # nodes answered by a failed verdict remembered from before

    @property
    def feasible(self) -> bool:
        return self.best is not None


class SelectorCache:
    """Compiled selectors and verdicts, shared across claims and nodes."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[str, tuple[str, str, str], int], tuple[bool, str | None]] = {}
        self._inputs: dict[int, CelDevice] = {}
        self._generations: dict[tuple[str, str], int] = {}

    def bind(self, view: ClusterView) -> None:
        self._generations = {(p.driver, p.name): p.generation for p in view.pools}

    def __call__(self, expression: str, dev: Device) -> tuple[bool, str | None]:
        gen = self._generations.get((dev.driver, dev.pool), 0)
        key = (expression, dev.key, gen)
        hit = self._verdicts.get(key)
        if hit is None:
            inp = self._inputs.get(id(dev))
            if inp is None:
                inp = self._inputs[id(dev)] = CelDevice.from_slice_device(dev.driver, dev.raw)
            hit = self._verdicts[key] = evaluate(compile_selector(expression), inp)
        return hit


def validate(claims: list[Claim], view: ClusterView) -> None:
    """Refuse claims the API server or scheduler would refuse, with the place and reason."""
    for claim in claims:
        for cr in claim.requests:
            for req in cr.alternatives:
                cls = view.classes.get(req.device_class)
                if cls is None:
                    known = ", ".join(sorted(view.classes)) or "none"
                    raise InputError(
                        f"claim {claim.ref}: request {req.name}: device class "
                        f"{req.device_class!r} does not exist (known: {known})"
                    )
                for expr in [*class_selectors(cls), *req.selectors]:
                    try:
                        compile_selector(expr)
                    except CelCompileError as e:
                        raise InputError(
                            f"claim {claim.ref}: request {req.name}: invalid CEL selector: {e}"
                        ) from e


class Allocator:
    def __init__(
        self,
        view: ClusterView,
        *,
        cache: SelectorCache | None = None,
        max_solutions: int = 256,
        budget: int = 200_000,
        device_filter: DeviceFilter | None = None,
        failures: FailedVerdicts | None = None,
        scheduler_errors: bool = True,
    ) -> None:
        """``failures``: where failed verdicts are remembered (default: the process-wide
        `memo.REMEMBERED`, which outlives the allocator a controller pass builds).
        ``scheduler_errors``: answer as kube-scheduler would for a claim whose selector fails
        on a node this decision did not search (it filters every node, and one error fails
        the pod); the gpudra controller, which decides for itself, turns it off and is spared
        evaluating every selector on every node."""
        self.view = view
        self.cache = cache or SelectorCache()
        self.cache.bind(view)
        self.max_solutions = max_solutions
        self.budget = budget
        self.device_filter = device_filter
        self.failures = REMEMBERED if failures is None else failures
        self.scheduler_errors = scheduler_errors
        # (node, selectors) -> whether one of them fails on one of the node's devices; the
        # view's devices do not change for the allocator's life, so this is computed once
        self._erring: dict[tuple[str, tuple[str, ...]], bool] = {}

    def allocate(
        self, claims: list[Claim], nodes: list[str] | None = None, *, best: bool = True
    ) -> Outcome:
        """Where ``claims`` (allocated together, on one node) fit best.  Raises InputError.

        Nodes are visited by their best possible score (the packing term is the only one that
        differs before searching), and the visit stops once no remaining node can beat the
        best assignment found.  Nodes in the same state (same devices, verdicts, free set and
        topology) share one search through a signature cache.
        """
        validate(claims, self.view)
        out = Outcome(ignored=list(self.view.ignored))
        names = nodes if nodes is not None else self.view.node_names()
        need = sum(min(r.count for r in cr.alternatives) for c in claims for cr in c.requests)
        order = names if not best else sorted(names, key=lambda n: -self._bound(n, need))
        ranked: list[Assignment] = []
        memo: dict[tuple[object, ...], tuple[list[Assignment], Diagnosis | None]] = {}
        unsearched: list[str] = []  # nodes the scheduler searches and this visit did not
        for i, node in enumerate(order):
            if (
                best
                and ranked
                and ranked[0].score.total >= self._bound(node, need)
                and (len(ranked) > 1)
            ):
                unsearched += order[i:]
                break
            out.nodes_tried += 1
            devices = self.view.devices_for(node)
            free = len(devices) - self.view.in_use_count(node)
            # a shareable device can serve several requests: no count bound then
            if (
                free < need
                and not any(d.multi for d in devices)
                and not any(
                    r.admin_access for c in claims for cr in c.requests for r in cr.alternatives
                )
            ):
                short = Diagnosis(node=node, total_devices=len(devices))
                short.shortfalls[""] = (
                    f"needs at least {need} device(s); {free} of {len(devices)} are free"
                )
                out.diagnoses.append(short)
                unsearched.append(node)
                continue
            found, diag = self._node(node, claims, memo, best, out)
            ranked.extend(found)
            ranked.sort(key=lambda p: -p.score.total)
            del ranked[2:]
            if diag is not None:
                out.diagnoses.append(diag)
            if found and not best:
                unsearched += order[i + 1 :]
                break
        exprs = claim_expressions(self.view, claims) if unsearched and self.scheduler_errors else []
        for node in unsearched if self.scheduler_errors else ():
            error = self._scheduler_error(node, claims, exprs)
            if error is not None:
                why = f"selector error: {error}"
                out.diagnoses.append(Diagnosis(node=node, selector_error=error, gave_up=why))
        errors = [d for d in out.diagnoses if d.selector_error]
        if errors:
            # kube-scheduler fails the whole pod when a selector errors on a node it searches
            out.selector_error = (
                f"node {errors[0].node}: {errors[0].selector_error}; kube-scheduler stops "
                "scheduling a pod whose selector fails at run time: guard attribute lookups "
                "with has() or 'in'"
            )
            return out
        if ranked:
            out.best = ranked[0]
            out.runner_up = ranked[1] if len(ranked) > 1 else None
        return out

    def _scheduler_error(self, node: str, claims: list[Claim], exprs: list[str]) -> str | None:
        """The selector error kube-scheduler's first-fit search would hit on a node this
        decision did not search (it filters every node, and one error fails the pod), or
        None.  Only a node where one of ``exprs`` (the claims' selectors) fails on some
        device is searched."""
        key = (node, tuple(exprs))
        erring = self._erring.get(key)
        if erring is None:
            devices = self.view.devices_for(node)
            erring = self._erring[key] = any(self.cache(e, d)[1] for d in devices for e in exprs)
        if not erring:
            return None
        search = self._search(node, claims)
        try:
            next(search.solutions(), None)
        except SelectorError as e:
            return str(e)
        except BudgetExceeded:
            return None
        return None

    def _search(self, node: str, claims: list[Claim]) -> NodeSearch:
        return NodeSearch(
            self.view,
            node,
            claims,
            matcher=self.cache,
            budget=self.budget,
            device_filter=self.device_filter,
        )

    def _bound(self, node: str, need: int) -> float:
        devices = self.view.devices_for(node)
        if not devices:
            return 0.0
        used = self.view.in_use_count(node)
        return W_BANDWIDTH + W_LEFT + W_PACK * min(1.0, (used + need) / len(devices))

    def _node(
        self,
        node: str,
        claims: list[Claim],
        memo: dict[tuple[object, ...], tuple[list[Assignment], Diagnosis | None]],
        best: bool,
        out: Outcome,
    ) -> tuple[list[Assignment], Diagnosis | None]:
        key = failure_key(
            self.view, node, claims, budget=self.budget, device_filter=self.device_filter
        )
        remembered = self.failures.get(key)
        if remembered is not None:
            out.remembered += 1
            return [], remembered
        sig = signature(self.view, node, claims, self.cache, self.device_filter)
        if sig in memo:
            cached, diag = memo[sig]
            if diag is not None:
                diag = replace(diag, node=node)
                self.failures.put(key, diag)
            return [self._rebase(p, node) for p in cached], diag
        search = self._search(node, claims)
        found: list[Assignment] = []
        try:
            for sol in search.solutions():
                found.append(Assignment(sol, score(self.view, sol)))
                if not best or len(found) >= self.max_solutions:
                    break
        except BudgetExceeded as e:
            search.diag.gave_up = str(e)
        except SelectorError as e:
            search.diag.gave_up = f"selector error: {e}"
            search.diag.selector_error = str(e)
        out.search_steps += search.steps
        found.sort(key=lambda p: -p.score.total)
        top = found[:2]
        diag = None if found else search.diag
        memo[sig] = (top, diag)
        if diag is not None:
            self.failures.put(key, diag)
        return top, diag

    def _rebase(self, p: Assignment, node: str) -> Assignment:
        """The same assignment on another node in the same state."""
        by_name = {d.name: d for d in self.view.devices_for(node)}
        choices = tuple(replace(c, device=by_name[c.device.name]) for c in p.solution.choices)
        return Assignment(Solution(node=node, choices=choices), p.score)

    def commit(self, assignment: Assignment) -> None:
        """Mark a chosen assignment's devices in use, or its shares taken (for allocating
        further claims)."""
        for c in assignment.solution.choices:
            if c.request.admin_access:
                continue
            if c.consumed is not None:
                self.view.use_share(c.device.key, dict(c.consumed))
            else:
                self.view.use(c.device.key)

    def release(self, assignment: Assignment) -> None:
        """Undo `commit`."""
        for c in assignment.solution.choices:
            if c.request.admin_access:
                continue
            if c.consumed is not None:
                self.view.release_share(c.device.key, dict(c.consumed))
            else:
                self.view.release(c.device.key)
