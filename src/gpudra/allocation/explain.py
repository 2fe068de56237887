"""Turn an allocation outcome into words a user understands (pure)."""

from __future__ import annotations

from gpudra.allocation.engine import Assignment, Outcome
from gpudra.allocation.inputs import Claim
from gpudra.allocation.search import Diagnosis
from gpudra.catalogue.attributes import UUID


def describe_assignment(title: str, p: Assignment, claims: list[Claim]) -> list[str]:
    lines = [f"{title}: node {p.node}  ({p.score.describe()})"]
    for claim in claims:
        for c in [c for c in p.solution.choices if c.claim is claim]:
            uuid = c.device.attr(f"{c.device.driver}/{UUID}")
            lines.append(
                f"  {claim.ref}  request {c.request.name:<12} -> {c.device.pool}/{c.device.name}"
                + (f"  {uuid[1]}" if uuid else "")
            )
    return lines


def describe_diagnosis(d: Diagnosis) -> list[str]:
    lines = [f"node {d.node}: {d.total_devices} device(s)"]
    if d.gave_up:
        lines.append(f"  search {d.gave_up}")
    requests = sorted(set(d.rejected) | set(d.shortfalls))
    for req in requests:
        reasons = d.rejected.get(req)
        parts = [f"{n} {why}" for why, n in reasons.most_common()] if reasons else []
        head = f"  request {req}: " if req else "  "
        if parts:
            lines.append(head + "rejected " + "; ".join(parts))
            head = "    "
        if req in d.shortfalls:
            lines.append(head + d.shortfalls[req])
    if not requests and not d.gave_up:
        lines.append("  no device of this node is usable")
    return lines


def explain(outcome: Outcome, claims: list[Claim], *, max_nodes: int = 10) -> str:
    names = ", ".join(c.ref for c in claims)
    if outcome.best is not None:
        lines = describe_assignment("best", outcome.best, claims)
        if outcome.runner_up is not None:
            lines += describe_assignment("runner-up", outcome.runner_up, claims)
        return "\n".join(lines) + "\n"
    if outcome.selector_error:
        return f"cannot allocate {names}: {outcome.selector_error}\n"
    lines = [f"cannot allocate {names} on any of {outcome.nodes_tried} node(s):"]
    diags = sorted(outcome.diagnoses, key=lambda d: -d.total_devices)
    for d in diags[:max_nodes]:
        lines += describe_diagnosis(d)
    if len(diags) > max_nodes:
        lines.append(f"... and {len(diags) - max_nodes} more node(s)")
    if not outcome.nodes_tried:
        lines.append("  no nodes publish devices")
    if outcome.ignored:
        lines.append("ResourceSlices ignored (their devices are offered nowhere):")
        lines += [f"  {i.reason}" for i in outcome.ignored[:max_nodes]]
        if len(outcome.ignored) > max_nodes:
            lines.append(f"... and {len(outcome.ignored) - max_nodes} more")
    return "\n".join(lines) + "\n"
