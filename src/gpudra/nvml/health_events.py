"""Backend health events, inventories and recovery actions -> GPU faults
(``gpudra.devices.faults``).

Both node daemons feed their fault tracker through these functions, so an XID, an ECC
error, a lost GPU and a recovery mean the same in a ResourceSlice taint and in a
ListAndWatch ``Unhealthy``.  A lost GPU lasts as long as the inventory says so: NVML reading
it again is its recovery (damped by the tracker).  An XID lasts as long as NVML's GPU
recovery action says something must be done: each probe re-reads it for the GPUs with XID
faults (``read_recovery_actions``, IO through the backend, outside the daemons' locks) and
``apply_recovery_actions`` ends them when it reads NONE (damped the same way).  Where the
driver has no such field the read is None and the XID faults last until a recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from gpudra.devices.faults import FaultKind, GpuFaults, RecoveryAction
from gpudra.devices.gpu import Health
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.errors import NvmlError

log = logging.getLogger(__name__)

_KINDS = {
    HealthEventKind.XID: FaultKind.XID,
    HealthEventKind.ECC_DOUBLE_BIT: FaultKind.ECC_DOUBLE_BIT,
    HealthEventKind.ECC_SINGLE_BIT: FaultKind.ECC_SINGLE_BIT,
    HealthEventKind.GPU_LOST: FaultKind.LOST,
}


def apply_event(faults: GpuFaults, ev: HealthEvent, inv: Inventory, now: float) -> bool:
    """Record one event; True if any GPU's faults changed.  An event NVML could not tie to a
    GPU concerns every GPU (as NVIDIA's plugins treat it: nothing possibly broken is handed
    out).  An XID's recovery action, if NVML gave one, classifies it."""
    uuids = [ev.gpu_uuid] if ev.gpu_uuid else [g.uuid for g in inv.gpus]
    if ev.kind is HealthEventKind.RECOVERED:
        changed = [faults.recover(u, now) for u in uuids]  # every GPU, not the first only
    else:
        kind = _KINDS[ev.kind]
        changed = [faults.report(u, kind, now, ev.xid, ev.recovery_action) for u in uuids]
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


def read_recovery_actions(
    read_action: Callable[[str], RecoveryAction | None], uuids: Iterable[str]
) -> dict[str, RecoveryAction | None]:
    """NVML's recovery action for each GPU (``GpuFaults.xid_gpus``); a read that fails is
    None, as the backend's contract says, even from a backend that breaks it."""
    out: dict[str, RecoveryAction | None] = {}
    for u in uuids:
        try:
            out[u] = read_action(u)
        except NvmlError as e:
            log.warning("GPU %s: recovery action unreadable: %s", u, e)
            out[u] = None
    return out


def apply_recovery_actions(
    faults: GpuFaults, actions: Mapping[str, RecoveryAction | None], now: float
) -> bool:
    """Each GPU's recovery action, read now: NONE ends its XID faults (after the damping
    window), any other keeps them (and says how fatal they are), None (NVML does not say)
    changes nothing.  True if any GPU's faults changed."""
    changed = [
        faults.recovery_action(u, action, now)
        for u, action in actions.items()
        if action is not None
    ]
    return any(changed)
