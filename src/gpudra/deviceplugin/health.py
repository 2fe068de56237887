"""Which GPUs the device plugin reports Unhealthy, and why (pure, with a clock).

The DRA plugin's fault rules, not a copy: events and inventories go through
``gpudra.nvml.health_events`` into a ``gpudra.devices.faults.GpuFaults``, so what taints a
device in a ResourceSlice is what makes it Unhealthy in ListAndWatch.  A GPU with a fatal
fault (an XID NVML gives a recovery action for, or without one an XID other than the
application's; double-bit ECC; lost) is Unhealthy, and so is every MIG device and replica of
it, until it has been clear for ``recovery_s``; informational faults (an XID NVML says needs
nothing, XID 13, single-bit ECC) change nothing.  A GPU's XID faults end when NVML's recovery
action reads NONE again: the daemon reads it for ``xid_gpus`` (outside its lock) and passes
it to ``recovery_actions``.  The other GPUs keep serving whatever happens to one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gpudra.devices.faults import GpuFaults, RecoveryAction
from gpudra.devices.gpu import Health
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent
from gpudra.nvml.health_events import apply_event, apply_inventory, apply_recovery_actions


class GpuHealth:
    def __init__(self, recovery_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self._faults = GpuFaults(recovery_s)
        self._clock = clock

    def event(self, ev: HealthEvent, inv: Inventory) -> bool:
        """Apply one event; True if any GPU's faults changed."""
        return apply_event(self._faults, ev, inv, self._clock())

    def inventory(self, inv: Inventory) -> bool:
        return apply_inventory(self._faults, inv, self._clock())

    def xid_gpus(self) -> list[str]:
        """The GPUs whose XID faults NVML's recovery action could end: read it for these."""
        return self._faults.xid_gpus()

    def recovery_actions(self, actions: Mapping[str, RecoveryAction | None]) -> bool:
        """NVML's recovery action of GPUs, just read: NONE ends their XID faults (damped).
        True if any GPU's faults, or their ending, changed."""
        return apply_recovery_actions(self._faults, actions, self._clock())

    def due(self) -> bool:
        """A damping window has ended since the faults last changed."""
        end = self._faults.next_change()
        return end is not None and self._clock() >= end

    def unhealthy(self, inv: Inventory) -> dict[int, str]:
        """GPU index -> why, for every GPU that must not be handed out now."""
        current = self._faults.current(self._clock())
        out: dict[int, str] = {}
        for g in inv.gpus:
            fatal = [f for f in current.get(g.uuid, ()) if f.fatal]
            if g.health is Health.LOST:
                out[g.index] = "NVML cannot read the GPU (lost)"
            elif fatal:
                out[g.index] = "; ".join(f.describe() for f in fatal)
            elif g.health is not Health.HEALTHY:
                out[g.index] = f"NVML reports the GPU {g.health.value}"
        return out
