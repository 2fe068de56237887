"""The node's GPU faults: what a GPU suffers now, as device taints (DRA) and as Unhealthy
(device plugin).  One tracker for both daemons, so an XID, an ECC error, a lost GPU and a
recovery mean the same in a ResourceSlice taint and in a ListAndWatch ``Unhealthy``.

Thread-safe; its reads (``current``, ``taints``, ``unhealthy``, ``due``) are pure: they tell,
they never announce.  Changes are announced by ``gpudra.nodeagent.watch.GpuWatch``, the only
writer besides tests: it reports health events, inventories and NVML's recovery actions in
(``gpudra.nvml.health_events`` says what each means) and compares what the tracker says
with what it said last.

A GPU with a fatal fault (an XID NVML gives a recovery action for, or without one an XID
other than the application's; double-bit ECC; lost) is unhealthy, and every device of it,
until it has been clear for ``recovery_s`` (damping a flapping GPU); informational faults
(an XID NVML says needs nothing, XID 13, single-bit ECC) taint with effect None where the
server has that effect, and change nothing in the device plugin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gpudra.catalogue.catalogue import PARTITIONABLE_SINCE_MINOR, ServerCapabilities
from gpudra.devices.faults import Fault, GpuFaults, RecoveryAction, TaintEffect, fault_taints
from gpudra.devices.gpu import Health
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent
from gpudra.nvml.health_events import (
    apply_event,
    apply_inventory,
    apply_recovery_actions,
    read_recovery_actions,
)

# device taints per device: 4 on 1.34, 16 from 1.35; one is kept for the controller's
MAX_TAINTS_1_34, MAX_TAINTS = 4, 16


class FaultTracker:
    def __init__(
        self,
        *,
        recovery_s: float,
        lost_effect: TaintEffect = "NoExecute",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._faults = GpuFaults(recovery_s)
        self._lost_effect = lost_effect
        self._clock = clock
        self._lock = threading.Lock()

    # --- reports in (the GPU watch) -----------------------------------------------------------

    def event(self, ev: HealthEvent, inv: Inventory) -> bool:
        """Apply one health event; True if any GPU's faults changed."""
        with self._lock:
            return apply_event(self._faults, ev, inv, self._clock())

    def inventory(self, inv: Inventory) -> bool:
        """Apply an inventory (lost GPUs, and their return); True if any GPU's faults changed."""
        with self._lock:
            return apply_inventory(self._faults, inv, self._clock())

    def recovery_actions(self, read_action: Callable[[str], RecoveryAction | None]) -> bool:
        """Re-read NVML's recovery action of each GPU with XID faults (``read_action``, the
        backend's, called outside the lock: NVML may hang) and end them where it reads NONE.
        True if any GPU's faults, or their ending, changed."""
        actions = read_recovery_actions(read_action, self.xid_gpus())
        with self._lock:
            return apply_recovery_actions(self._faults, actions, self._clock())

    # --- pure reads ---------------------------------------------------------------------------

    def due(self) -> bool:
        """A damping window has ended since the faults last changed."""
        with self._lock:
            end = self._faults.next_change()
        return end is not None and self._clock() >= end

    def xid_gpus(self) -> list[str]:
        """The GPUs whose XID faults NVML's recovery action could end."""
        with self._lock:
            return self._faults.xid_gpus()

    def current(self) -> dict[str, tuple[Fault, ...]]:
        """GPU UUID -> its faults that count now (the ones its taints say)."""
        with self._lock:
            return self._faults.current(self._clock())

    def taints(
        self, inv: Inventory, caps: ServerCapabilities
    ) -> dict[int, tuple[dict[str, Any], ...]]:
        """GPU index -> the device taints of its faults now."""
        current = self.current()
        old = caps.minor is not None and caps.minor < PARTITIONABLE_SINCE_MINOR
        room = (MAX_TAINTS_1_34 if old else MAX_TAINTS) - 1
        out: dict[int, tuple[dict[str, Any], ...]] = {}
        for g in inv.gpus:
            taints = fault_taints(
                current.get(g.uuid, ()),
                lost_effect=self._lost_effect,
                effect_none=caps.partitionable,
                room=room,
            )
            if taints:
                out[g.index] = tuple(taints)
        return out

    def unhealthy(self, inv: Inventory) -> dict[int, str]:
        """GPU index -> why, for every GPU that must not be handed out now."""
        current = self.current()
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
