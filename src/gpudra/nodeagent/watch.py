"""The GPU watch: what happens to the node's GPUs over time, for both node daemons.

Two guarded threads (``gpudra.common.threads``) feed the fault tracker
(``gpudra.nodeagent.faults``):

* **health events** (``health-events``): the backend's XIDs, ECC errors, lost and recovered
  GPUs, each applied with a fresh inventory (the last one when NVML does not answer); the
  loop survives any error (logged, retried after 5 s) and wakes every second, so a damping
  window that ended (the tracker's ``due``) is announced within a second without another
  event;
* **the NVML probe** (``nvml-probe``, every ``probe_interval_s``): reads the inventory (lost
  GPUs without an event, their return, MIG layout changes) and NVML's recovery action of the
  GPUs with XID faults (NONE ends them).  Its result is the daemon's NVML liveness: a probe
  that fails (``NvmlError`` or anything else) is reported to ``Liveness``, which fails
  ``/healthz`` once NVML has not completed a call for ``nvml_wedged_s``; the GPUs keep their
  last known health meanwhile (a daemon problem is no GPU fault).

The watch is the only place that announces: after each event, probe and tick it compares the
tracker's faults and the inventory with what it announced last and, when anything differs
(or an event arrived), calls every listener with one ``WatchReport``, in order, on the
watch's thread.  Reads elsewhere (a prepare, a publish, the health stream) never announce.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gpudra.devices.faults import Fault
from gpudra.devices.inventory import Inventory
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nodeagent.liveness import Liveness
from gpudra.nvml.backend import GpuBackend, HealthEvent
from gpudra.nvml.errors import NvmlError

log = logging.getLogger(__name__)

EVENT_WAIT_S = 1.0
EVENTS_RETRY_S = 5.0


@dataclass(frozen=True)
class GpuChange:
    """A GPU's faults changed: what they were when last announced, and what they are now."""

    index: int
    uuid: str
    before: tuple[Fault, ...]
    now: tuple[Fault, ...]


@dataclass(frozen=True)
class WatchReport:
    """What a listener is told: the inventory now (the last one read, if NVML does not
    answer), every GPU's faults now, the GPUs whose faults changed since the last report,
    the health events that arrived (XIDs are counted from these), and whether the inventory
    differs from the last report's (``inventory_changed``: MIG layout or GPU health) and
    its GPUs' NVML health in particular (``health_changed``)."""

    inventory: Inventory
    faults: Mapping[str, tuple[Fault, ...]]
    changes: tuple[GpuChange, ...] = ()
    events: tuple[HealthEvent, ...] = ()
    inventory_changed: bool = False
    health_changed: bool = False


Listener = Callable[[WatchReport], None]


class GpuWatch:
    def __init__(
        self,
        backend: GpuBackend,
        tracker: FaultTracker,
        liveness: Liveness,
        *,
        inventory: Inventory,
        probe_interval_s: float,
    ) -> None:
        self._backend = backend
        self.tracker = tracker
        self._liveness = liveness
        self._stop = liveness.stop
        self._interval = probe_interval_s
        # reentrant: a listener may read ``last_inventory`` (the device plugin's catalogue)
        self._lock = threading.RLock()
        self._inventory = inventory
        self._said: dict[str, tuple[Fault, ...]] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every report from now on (before ``start``)."""
        self._listeners.append(listener)

    def last_inventory(self) -> Inventory:
        """The inventory the watch read last."""
        with self._lock:
            return self._inventory

    def start(self) -> None:
        """Announce the state now to every listener, then start the two threads."""
        self.announce(self.last_inventory(), force=True)
        self._liveness.threads.spawn("health-events", self._run_events)
        self._liveness.threads.spawn("nvml-probe", self._run_probe)

    # --- one step each (the threads loop over these; tests call them directly) ----------------

    def handle_event(self, ev: HealthEvent) -> WatchReport | None:
        """Apply one health event and announce it; the report told."""
        log.warning("GPU health event: %s", ev.to_wire())
        try:
            inv = self._backend.inventory()
        except NvmlError:
            inv = self.last_inventory()
        self.tracker.event(ev, inv)
        return self.announce(inv, events=(ev,))

    def probe(self) -> bool:
        """Read NVML once (inventory, recovery actions) and announce; False if it failed."""
        try:
            inv = self._backend.inventory()
        except Exception as e:  # NvmlError, or worse: both mean NVML is not answering
            log.warning("NVML probe failed: %s", e)
            self._liveness.nvml_failed(f"{type(e).__name__}: {e}")
            return False
        self._liveness.nvml_ok()
        self.tracker.inventory(inv)
        self.tracker.recovery_actions(self._backend.recovery_action)
        self.announce(inv)
        return True

    def announce(
        self, inv: Inventory, *, events: tuple[HealthEvent, ...] = (), force: bool = False
    ) -> WatchReport | None:
        """Tell the listeners if the faults, the inventory or ``events`` say anything new
        (always with ``force``); the report told, or None."""
        with self._lock:
            faults = self.tracker.current()
            changes = tuple(
                GpuChange(g.index, g.uuid, self._said.get(g.uuid, ()), faults.get(g.uuid, ()))
                for g in inv.gpus
                if self._said.get(g.uuid, ()) != faults.get(g.uuid, ())
            )
            moved = inv != self._inventory
            health = moved and _health(inv) != _health(self._inventory)
            if health:
                log.warning("GPU health changed: %s", _health(inv))
            self._inventory = inv
            for c in changes:
                self._said[c.uuid] = c.now
                _log_change(c)
            if not (changes or moved or events or force):
                return None
            report = WatchReport(
                inventory=inv,
                faults=faults,
                changes=changes,
                events=events,
                inventory_changed=moved,
                health_changed=health,
            )
            for listener in self._listeners:
                listener(report)
            return report

    # --- the threads ------------------------------------------------------------------------

    def _run_events(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self._backend.wait_health_event(EVENT_WAIT_S)
            except NvmlError as e:
                log.warning("health events unavailable: %s", e)
                self._stop.wait(EVENTS_RETRY_S)
                continue
            except Exception:
                log.exception("waiting for GPU health events failed; retrying")
                self._stop.wait(EVENTS_RETRY_S)
                continue
            if ev is not None:
                self.handle_event(ev)
            elif self.tracker.due():  # a damping window ended: announce it without an event
                self.announce(self.last_inventory())

    def _run_probe(self) -> None:
        while not self._stop.is_set():
            self.probe()
            self._stop.wait(self._interval)


def _health(inv: Inventory) -> dict[str, str]:
    return {g.uuid: g.health.value for g in inv.gpus}


def _log_change(c: GpuChange) -> None:
    if c.now:
        log.warning("GPU %d (%s): %s", c.index, c.uuid, "; ".join(f.describe() for f in c.now))
    else:
        log.info("GPU %d (%s): no faults any more", c.index, c.uuid)
