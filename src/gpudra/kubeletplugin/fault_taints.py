"""The node daemon's GPU faults and the device taints they become (thread-safe shell).

The health-event thread and the NVML probe report into it (``gpudra.nvml.health_events``),
the probe also NVML's recovery action of each GPU with XID faults (``recovery_actions``:
NONE ends them); the catalogue asks it for each GPU's taints (``gpudra.devices.faults``)
when it is built, so the next publish carries them.  ``due`` tells the health thread when a
damping window has ended, so a recovered GPU's taint goes without waiting for another
event.  Metrics: a gauge per GPU (1 healthy, 0 with a fatal fault) and a counter per XID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpudra.catalogue.catalogue import PARTITIONABLE_SINCE_MINOR, ServerCapabilities
from gpudra.devices.faults import Fault, GpuFaults, RecoveryAction, TaintEffect, fault_taints
from gpudra.devices.inventory import Inventory
from gpudra.metrics.node import NodeMetrics
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.health_events import (
    apply_event,
    apply_inventory,
    apply_recovery_actions,
    read_recovery_actions,
)

log = logging.getLogger(__name__)

# device taints per device: 4 on 1.34, 16 from 1.35; one is kept for the controller's
MAX_TAINTS_1_34, MAX_TAINTS = 4, 16


class FaultTaints:
    def __init__(
        self,
        *,
        recovery_s: float,
        lost_effect: TaintEffect,
        metrics: NodeMetrics,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[int, str, tuple[Fault, ...], tuple[Fault, ...]], None] | None = None,
    ) -> None:
        self._faults = GpuFaults(recovery_s)
        # (gpu index, uuid, faults before, faults now) whenever a GPU's taints change
        self._on_change = on_change or (lambda index, uuid, before, now: None)
        self._lost_effect = lost_effect
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._said: dict[str, tuple[Fault, ...]] = {}

    def event(self, ev: HealthEvent, inv: Inventory) -> bool:
        if ev.kind is HealthEventKind.XID and ev.gpu_uuid:
            gpu = inv.gpu(ev.gpu_uuid)
            self._metrics.xid(gpu.index if gpu else -1, ev.xid or 0)
        with self._lock:
            return apply_event(self._faults, ev, inv, self._clock())

    def inventory(self, inv: Inventory) -> bool:
        with self._lock:
            return apply_inventory(self._faults, inv, self._clock())

    def recovery_actions(self, read_action: Callable[[str], RecoveryAction | None]) -> bool:
        """Re-read NVML's recovery action of each GPU with XID faults (``read_action``, the
        backend's, called outside the lock: NVML may hang) and end them where it reads NONE.
        True if any GPU's faults, or their ending, changed."""
        with self._lock:
            uuids = self._faults.xid_gpus()
        actions = read_recovery_actions(read_action, uuids)
        with self._lock:
            return apply_recovery_actions(self._faults, actions, self._clock())

    def due(self) -> bool:
        """A damping window has ended: the taints changed without an event."""
        with self._lock:
            end = self._faults.next_change()
        return end is not None and self._clock() >= end

    def current(self) -> dict[str, tuple[Fault, ...]]:
        """GPU UUID -> its faults that count now (the ones its taints say)."""
        with self._lock:
            return self._faults.current(self._clock())

    def taints(
        self, inv: Inventory, caps: ServerCapabilities
    ) -> dict[int, tuple[dict[str, Any], ...]]:
        """GPU index -> the device taints of its faults now."""
        with self._lock:
            current = self._faults.current(self._clock())
        self._report(inv, current)
        old = caps.minor is not None and caps.minor < PARTITIONABLE_SINCE_MINOR
        room = (MAX_TAINTS_1_34 if old else MAX_TAINTS) - 1
        out: dict[int, tuple[dict[str, Any], ...]] = {}
        for g in inv.gpus:
            faults = current.get(g.uuid, ())
            taints = fault_taints(
                faults, lost_effect=self._lost_effect, effect_none=caps.partitionable, room=room
            )
            if taints:
                out[g.index] = tuple(taints)
        return out

    def _report(self, inv: Inventory, current: dict[str, tuple[Fault, ...]]) -> None:
        for g in inv.gpus:
            faults = current.get(g.uuid, ())
            self._metrics.gpu_health(g.index, g.uuid, not any(f.fatal for f in faults))
            before = self._said.get(g.uuid, ())
            if before != faults:
                self._on_change(g.index, g.uuid, before, faults)
                if faults:
                    log.warning(
                        "GPU %d (%s): %s", g.index, g.uuid, "; ".join(f.describe() for f in faults)
                    )
                else:
                    log.info("GPU %d (%s): no faults any more; taints removed", g.index, g.uuid)
                self._said[g.uuid] = faults
