"""The GPU watch is the only announcer: reads (the catalogue, the tracker's taints) never
tell anyone that a GPU's faults changed; the watch does, once per change, with the GPU's
faults before and after, and the NVML probe reports NVML's liveness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpudra.catalogue.catalogue import ServerCapabilities
from gpudra.catalogue.gpuset import GpuSet
from gpudra.nodeagent.catalogue_source import CatalogueSource
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nodeagent.liveness import Liveness
from gpudra.nodeagent.watch import GpuWatch, WatchReport
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.errors import NvmlError
from gpudra.nvml.mock import MockBackend, load_machine

NODE = "node-a"


class Clock:
    t = 1764590400.0

    def __call__(self) -> float:
        return self.t


class Flaky(MockBackend):
    down = False

    def inventory(self) -> Any:
        if self.down:
            raise NvmlError("NVML_ERROR_UNKNOWN")
        return super().inventory()


def setup(tmp_path: Path) -> tuple[Flaky, FaultTracker, GpuWatch, Liveness, list[WatchReport]]:
    b = Flaky(load_machine("dgx-h100"), node_name=NODE, state_file=tmp_path / "s")
    clock = Clock()
    tracker = FaultTracker(recovery_s=5, clock=clock)
    liveness = Liveness(nvml_wedged_s=60)
    watch = GpuWatch(b, tracker, liveness, inventory=b.inventory(), probe_interval_s=1)
    told: list[WatchReport] = []
    watch.subscribe(told.append)
    return b, tracker, watch, liveness, told


def test_reads_never_announce_and_the_watch_announces_each_change_once(tmp_path: Path) -> None:
    b, tracker, watch, _, told = setup(tmp_path)
    source = CatalogueSource(
        b.inventory, lambda: (1, 37), served=GpuSet(every=True, text="all"), taints=tracker.taints
    )
    uuid = b.inventory().gpus[2].uuid
    report = watch.handle_event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=uuid, xid=79))
    assert report is not None and [(c.index, c.before, len(c.now)) for c in report.changes] == [
        (2, (), 1)
    ]
    assert len(told) == 1
    tracker.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), b.inventory())
    tracker._clock.t += 5  # type: ignore[attr-defined]  # the damping window ended
    for _ in range(3):  # a prepare, a publish, the health stream: reads see it, tell nobody
        cat = source.current()
        assert tracker.taints(cat.inventory, ServerCapabilities(minor=37)) == {}
    assert len(told) == 1
    watch.announce(b.inventory())  # the watch's next tick tells it, once
    watch.announce(b.inventory())
    assert len(told) == 2
    (change,) = told[1].changes
    assert (change.index, change.now, len(change.before)) == (2, (), 1)


def test_the_probe_reports_nvml_to_liveness_and_keeps_the_last_inventory(tmp_path: Path) -> None:
    b, _, watch, liveness, told = setup(tmp_path)
    assert watch.probe()
    before = b.inventory()
    b.down = True
    assert not watch.probe()
    assert watch.last_inventory() == before
    b.down = False
    b.fall_off_bus(4)
    assert watch.probe()
    assert told[-1].health_changed and told[-1].inventory_changed
    assert [c.index for c in told[-1].changes] == [4]
    assert liveness.live().ok
    liveness_short = Liveness(nvml_wedged_s=0.0)
    b.down = True
    assert not GpuWatch(
        b, FaultTracker(recovery_s=0), liveness_short, inventory=before, probe_interval_s=1
    ).probe()
    (problem,) = liveness_short.live().problems
    assert "NVML has not completed a call" in problem and "NVML_ERROR_UNKNOWN" in problem
