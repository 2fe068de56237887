"""The exclusivity guard (pure): a device prepared for another claim is refused unless both
allocations allow sharing (a shareID each) or one is an adminAccess allocation; devices
conflict when their physical footprints (``<gpu uuid>/<memory slice>``) intersect, so a
whole GPU and a MIG device on it, or two overlapping MIG placements, are one device here.
Two allocators (kube-scheduler and the controller) can race: the node is the last line of
defence against two pods silently sharing a GPU."""

from __future__ import annotations

from collections.abc import Iterable

from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice


def _overlap(a: PreparedDevice, b: PreparedDevice) -> bool:
    """Same device, or physically overlapping (a MIG placement and its GPU or a neighbour)."""
    if a.pool == b.pool and a.device == b.device:
        return True
    return bool(a.footprint and b.footprint and set(a.footprint) & set(b.footprint))


def exclusivity_conflicts(plan: PreparedClaim, others: Iterable[PreparedClaim]) -> list[str]:
    """Devices of ``plan`` already prepared for another claim where not both may share.

    As upstream: an adminAccess allocation (monitoring, debugging) ignores ordinary claims to
    the device and is ignored by them; two ordinary allocations share a device only when both
    carry a ``shareID`` (consumable capacity)."""
    problems = []
    for other in others:
        if other.uid == plan.uid:
            continue
        for mine in plan.devices:
            held = next(
                (d for d in other.devices if _overlap(mine, d) and not d.admin_access), None
            )
            if mine.admin_access or held is None:
                continue
            if not (mine.shareable and held.shareable):
                problems.append(
                    f"device {mine.device} ({mine.uuid}) is already prepared for claim "
                    f"{other.namespace}/{other.name} ({other.uid}) and the two allocations do "
                    f"not both allow sharing"
                )
    return problems
