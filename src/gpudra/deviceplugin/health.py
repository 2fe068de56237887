"""Which GPUs the device plugin reports Unhealthy, and why (pure).

Two sources, as the node daemon has them: the backend's inventory (a GPU NVML cannot read
is LOST, for as long as it cannot) and its health events.  A fatal XID marks its GPU (and
so every MIG device and replica of it) until a ``recovered`` event for it; XIDs that are
the application's fault are ignored, the list NVIDIA's device plugin and DRA driver ignore
by default (13, 31, 43, 45, 68, 109).  An event NVML could not attribute to a GPU marks
every GPU, as NVIDIA does: nothing is handed out that might be broken.  The other GPUs keep
serving whatever happens to one.
"""

from __future__ import annotations

from gpudra.devices.gpu import Health
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent, HealthEventKind

# XIDs caused by the application, not the GPU (NVIDIA's default ignore list)
IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})


class GpuHealth:
    def __init__(self, ignored_xids: frozenset[int] = IGNORED_XIDS) -> None:
        self._ignored = ignored_xids
        self._marks: dict[str, str] = {}  # GPU UUID -> why it is unhealthy
        self._all: str | None = None  # an event without a GPU: every GPU

    def event(self, ev: HealthEvent, inv: Inventory) -> bool:
        """Apply one event; True if any GPU's verdict may have changed."""
        uuids = [ev.gpu_uuid] if ev.gpu_uuid else [g.uuid for g in inv.gpus]
        if ev.kind is HealthEventKind.RECOVERED:
            changed = any(u in self._marks for u in uuids) or self._all is not None
            for u in uuids:
                self._marks.pop(u, None)
            if ev.gpu_uuid is None:
                self._all = None
            return changed
        if ev.kind is HealthEventKind.XID:
            if ev.xid is not None and ev.xid in self._ignored:
                return False
            why = f"XID {ev.xid}"
        elif ev.gpu_uuid is not None:
            return True  # a lost GPU: the inventory says so for as long as it lasts
        else:
            why = "GPU lost (fallen off the bus)"
        if ev.gpu_uuid is None:
            self._all = f"{why} on an unidentified GPU"
        for u in uuids:
            self._marks[u] = why
        return True

    def unhealthy(self, inv: Inventory) -> dict[int, str]:
        """GPU index -> why, for every GPU that must not be handed out now."""
        out: dict[int, str] = {}
        for g in inv.gpus:
            if g.health is Health.LOST:
                out[g.index] = "NVML cannot read the GPU (lost)"
            elif g.health is not Health.HEALTHY:
                out[g.index] = f"NVML reports the GPU {g.health.value}"
            elif g.uuid in self._marks:
                out[g.index] = self._marks[g.uuid]
            elif self._all is not None:
                out[g.index] = self._all
        return out
