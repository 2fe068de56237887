"""Which MIG instances no claim holds (pure): the start-up sweep's decision.

Only dynamic-MIG GPUs are swept, by their *effective* mode in the node catalogue: on a GPU
published as static MIG (a 1.34 server, or a GPU outside ``--dynamic-mig-gpus``) the
instances are the published devices themselves, never strays.  Nothing is decided while the
server's capabilities are unknown, because the mode could still change.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpudra.catalogue.catalogue import GpuMode, NodeCatalogue
from gpudra.devices.gpu import MigDevice
from gpudra.nodestate.checkpoint import PreparedClaim


def unclaimed_instances(
    catalogue: NodeCatalogue, claims: Iterable[PreparedClaim]
) -> list[MigDevice]:
    if not catalogue.capabilities.known:
        return []
    held = {
        (d.mig_parent, d.mig_profile, d.mig_start)
        for c in claims
        for d in c.devices
        if d.mig_profile
    }
    inv = catalogue.inventory
    return [
        m
        for g in catalogue.gpus_in(GpuMode.DYNAMIC_MIG)
        for m in inv.migs_on(g)
        if (m.parent_uuid, m.profile, m.placement_start) not in held
    ]
