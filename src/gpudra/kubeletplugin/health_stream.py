"""The kubelet's device health stream (KEP-4680, ``v1alpha1.DRAResourceHealth``): what to send.

The kubelet opens ``NodeWatchResources`` once per registered driver and writes what it hears
into ``status.containerStatuses[].allocatedResourcesStatus`` of the pods holding the devices.
Each message is the *complete* set of the driver's devices; a device not refreshed within its
``health_check_timeout_seconds`` (the kubelet's default: 30 s) turns Unknown, so the stream
sends the set when it opens, whenever a GPU's faults change, and every ``heartbeat_s``.

Health is the fault tracker's answer, the same one the device taints give: a device is
Unhealthy while its GPU has a fatal fault that still counts (active, or recovered less than
the damping time ago) or is lost; Healthy otherwise, with informational faults (a non-fatal
XID, a single-bit ECC error) named in the message.  ``device_health`` is pure;
``HealthBroadcast`` is the thread-safe fan-out the gRPC servicer iterates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from gpudra.catalogue.catalogue import NodeCatalogue
from gpudra.devices.faults import Fault, FaultKind
from gpudra.devices.gpu import Health

MESSAGE_LIMIT = 1024  # the kubelet cuts longer messages (1.36+)


@dataclass(frozen=True)
class DeviceHealth:
    pool: str
    device: str
    healthy: bool
    message: str


def _message(faults: tuple[Fault, ...], lost: bool) -> str:
    parts = [f.describe() for f in faults]
    if lost and not any(f.kind is FaultKind.LOST for f in faults):
        parts.insert(0, "GPU lost (NVML cannot reach it)")
    text = "; ".join(parts)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def device_health(
    catalogue: NodeCatalogue, faults: Mapping[str, tuple[Fault, ...]], *, pool: str
) -> tuple[DeviceHealth, ...]:
    """Every device of the catalogue with its health now (``faults``: by GPU UUID)."""
    gpus = {g.index: g for g in catalogue.inventory.gpus}
    out = []
    for d in catalogue.devices.values():
        gpu = gpus[d.gpu_index]
        mine = faults.get(gpu.uuid, ())
        lost = gpu.health is Health.LOST
        healthy = not lost and not any(f.fatal for f in mine)
        out.append(
            DeviceHealth(pool=pool, device=d.name, healthy=healthy, message=_message(mine, lost))
        )
    return tuple(out)


class HealthBroadcast:
    """The current health set, and a wake-up for every open stream when it changes."""

    def __init__(
        self,
        snapshot: Callable[[], tuple[DeviceHealth, ...]],
        *,
        heartbeat_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._cond = threading.Condition()
        self._version = 0
        self._closed = False
        self.streams = 0  # open streams (the kubelet holds one per registration)

    @property
    def timeout_s(self) -> int:
        """What the kubelet is told to wait before a device not refreshed is Unknown."""
        return max(1, int(self.heartbeat_s * 3))

    def changed(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def watch(self, active: Callable[[], bool]) -> Iterator[tuple[DeviceHealth, ...]]:
        """The set now, then again on every change and heartbeat, while ``active()``."""
        with self._cond:
            self.streams += 1
        try:
            while active():
                with self._cond:
                    seen = self._version
                    if self._closed:
                        return
                yield self._snapshot()
                due = self._clock() + self.heartbeat_s
                with self._cond:
                    while (
                        self._version == seen
                        and not self._closed
                        and active()
                        and self._clock() < due
                    ):
                        # wake at least once a second to notice a cancelled stream
                        self._cond.wait(min(1.0, max(0.0, due - self._clock())))
        finally:
            with self._cond:
                self.streams -= 1
