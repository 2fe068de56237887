"""Backend health events and inventories -> GPU faults (``gpudra.devices.faults``).

Both node daemons feed their fault tracker through these two functions, so an XID, an ECC
error, a lost GPU and a recovery mean the same in a ResourceSlice taint and in a
ListAndWatch ``Unhealthy``.  A lost GPU lasts as long as the inventory says so: NVML reading
it again is its recovery (damped by the tracker).
"""

from __future__ import annotations

from gpudra.devices.faults import FaultKind, GpuFaults
from gpudra.devices.gpu import Health
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent, HealthEventKind

_KINDS = {
    HealthEventKind.XID: FaultKind.XID,
    HealthEventKind.ECC_DOUBLE_BIT: FaultKind.ECC_DOUBLE_BIT,
    HealthEventKind.ECC_SINGLE_BIT: FaultKind.ECC_SINGLE_BIT,
    HealthEventKind.GPU_LOST: FaultKind.LOST,
}


def apply_event(faults: GpuFaults, ev: HealthEvent, inv: Inventory, now: float) -> bool:
    """Record one event; True if any GPU's faults changed.  An event NVML could not tie to a
    GPU concerns every GPU (as NVIDIA's plugins treat it: nothing possibly broken is handed
    out)."""
    uuids = [ev.gpu_uuid] if ev.gpu_uuid else [g.uuid for g in inv.gpus]
    if ev.kind is HealthEventKind.RECOVERED:
        changed = [faults.recover(u, now) for u in uuids]  # every GPU, not the first only
    else:
        changed = [faults.report(u, _KINDS[ev.kind], now, ev.xid) for u in uuids]
    return any(changed)


def apply_inventory(faults: GpuFaults, inv: Inventory, now: float) -> bool:
    """Lost GPUs from a fresh inventory, and the recovery of those readable again."""
    changed = []
    for g in inv.gpus:
        if g.health is Health.LOST:
            changed.append(faults.report(g.uuid, FaultKind.LOST, now))
        elif faults.lost(g.uuid):
            changed.append(faults.recover(g.uuid, now))
    return any(changed)
