"""GPU faults become device taints in the node catalogue: on the GPU's every device (MIG
devices inherit), after the controller-managed taint; a lost GPU stays published, tainted;
informational taints only where the server has effect None (1.35+); damped recovery, also
when NVML's recovery action reads NONE again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from gpudra.catalogue.catalogue import ServerCapabilities, build_catalogue
from gpudra.devices.faults import RecoveryAction
from gpudra.kubeletplugin.daemon import report_to_metrics
from gpudra.metrics.node import NodeMetrics
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nodeagent.liveness import Liveness
from gpudra.nodeagent.watch import GpuWatch
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.mock import MockBackend, load_machine

NODE = "node-a"


class Clock:
    t = 1764590400.0

    def __call__(self) -> float:
        return self.t


def taints_of(cat: Any, gpu: int) -> list[list[tuple[str, str, str]]]:
    return [
        [(t["key"], t["value"], t["effect"]) for t in (d.slice_device or {}).get("taints", [])]
        for d in cat.devices.values()
        if d.gpu_index == gpu
    ]


def test_an_xid_taints_every_device_of_its_gpu_and_recovery_removes_it_after_damping(
    tmp_path: Path,
) -> None:
    b = MockBackend(load_machine("dgx-h100-mig"), node_name=NODE, state_file=tmp_path / "s")
    inv0 = b.inventory()
    b.create_mig_device(inv0.gpus[3].uuid, "3g.40gb", 0)
    b.create_mig_device(inv0.gpus[3].uuid, "1g.10gb", 4)
    inv = b.inventory()
    clock = Clock()
    metrics = NodeMetrics()
    ft = FaultTracker(recovery_s=5, lost_effect="NoExecute", clock=clock)
    watch = GpuWatch(b, ft, Liveness(nvml_wedged_s=60), inventory=inv, probe_interval_s=1)
    watch.subscribe(lambda report: report_to_metrics(metrics, report))
    caps = ServerCapabilities(minor=37)
    ev = HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[3].uuid, xid=79)
    report = watch.handle_event(ev)  # what the health-event thread does with it
    assert report is not None and [c.index for c in report.changes] == [3]
    cat = build_catalogue(
        inv, managed=frozenset({3}), capabilities=caps, taints=ft.taints(inv, caps)
    )
    xid = ("gpu.gpudra.io/xid", "79", "NoSchedule")
    managed = ("gpu.gpudra.io/controller-managed", "true", "NoSchedule")
    assert taints_of(cat, 3) == [[managed, xid], [managed, xid]]  # both MIG devices
    assert all(t == [] for g in (0, 1, 2) for t in taints_of(cat, g))  # nothing else
    text = generate_latest(metrics.registry).decode()
    assert f'gpudra_gpu_health{{gpu="3",uuid="{inv.gpus[3].uuid}"}} 0.0' in text
    assert 'gpudra_gpu_xid_total{gpu="3",xid="79"} 1.0' in text
    ft.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=inv.gpus[3].uuid), inv)
    clock.t += 4
    assert ft.taints(inv, caps) and not ft.due()
    clock.t += 1
    assert ft.due() and ft.taints(inv, caps) == {}


def test_a_lost_gpu_stays_published_with_a_no_execute_taint(tmp_path: Path) -> None:
    b = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=tmp_path / "s")
    b.fall_off_bus(2)
    inv = b.inventory()
    ft = FaultTracker(recovery_s=0, lost_effect="NoExecute", clock=Clock())
    assert ft.inventory(inv)
    caps = ServerCapabilities(minor=34)
    cat = build_catalogue(inv, capabilities=caps, taints=ft.taints(inv, caps))
    (dev,) = [d for d in cat.devices.values() if d.gpu_index == 2]
    assert dev.slice_device is not None and not dev.healthy
    assert [t["key"] for t in dev.slice_device["taints"]] == ["gpu.gpudra.io/gpu-lost"]
    assert dev.slice_device["taints"][0]["effect"] == "NoExecute"
    # without a fault taint a lost GPU is not published at all (as before)
    assert build_catalogue(inv).devices[dev.name].slice_device is None
    b.recover(2)
    assert ft.inventory(b.inventory()) and ft.taints(b.inventory(), caps) == {}


def test_an_application_xid_is_an_effect_none_taint_on_1_35_and_nothing_on_1_34(
    tmp_path: Path,
) -> None:
    inv = MockBackend(load_machine("dgx-h100"), node_name=NODE).inventory()
    ft = FaultTracker(recovery_s=0, lost_effect="NoExecute", clock=Clock())
    ft.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[1].uuid, xid=13), inv)
    new = ft.taints(inv, ServerCapabilities(minor=35))
    assert [(t["value"], t["effect"]) for t in new[1]] == [("13", "None")]
    assert ft.taints(inv, ServerCapabilities(minor=34)) == {}


def test_a_recovery_action_back_to_none_removes_the_xid_taint_after_damping(
    tmp_path: Path,
) -> None:
    b = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=tmp_path / "s")
    inv = b.inventory()
    clock = Clock()
    ft = FaultTracker(recovery_s=5, lost_effect="NoExecute", clock=clock)
    caps = ServerCapabilities(minor=35)
    b.inject_xid(4, 13, recovery_action=RecoveryAction.GPU_RESET)  # NVML: the GPU's, not app's
    ev = b.wait_health_event(1.0)
    assert ev is not None and ft.event(ev, inv)
    assert [(t["value"], t["effect"]) for t in ft.taints(inv, caps)[4]] == [("13", "NoSchedule")]
    assert not ft.recovery_actions(b.recovery_action)  # still needs a reset: nothing changes
    b.set_recovery_action(4, RecoveryAction.NONE)  # reset done: the driver says fine
    assert ft.recovery_actions(b.recovery_action)
    clock.t += 4
    assert 4 in ft.taints(inv, caps) and not ft.due()  # damped
    clock.t += 1
    assert ft.due() and ft.taints(inv, caps) == {}


def test_without_the_field_the_xid_taint_stays_until_a_recovery(tmp_path: Path) -> None:
    b = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=tmp_path / "s")
    inv = b.inventory()
    clock = Clock()
    ft = FaultTracker(recovery_s=0, lost_effect="NoExecute", clock=clock)
    caps = ServerCapabilities(minor=35)
    ft.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[0].uuid, xid=79), inv)
    asked: list[str] = []

    def no_field(uuid: str) -> RecoveryAction | None:
        asked.append(uuid)
        return None

    assert not ft.recovery_actions(no_field)
    assert asked == [inv.gpus[0].uuid]  # only the GPUs with XID faults are read
    clock.t += 3600
    assert [(t["value"], t["effect"]) for t in ft.taints(inv, caps)[0]] == [("79", "NoSchedule")]


def test_an_xid_nvml_needs_nothing_for_is_informational(tmp_path: Path) -> None:
    inv = MockBackend(load_machine("dgx-h100"), node_name=NODE).inventory()
    ft = FaultTracker(recovery_s=0, lost_effect="NoExecute", clock=Clock())
    ev = HealthEvent(
        kind=HealthEventKind.XID,
        gpu_uuid=inv.gpus[6].uuid,
        xid=79,
        recovery_action=RecoveryAction.NONE,
    )
    ft.event(ev, inv)
    assert [(t["value"], t["effect"]) for t in ft.taints(inv, ServerCapabilities(minor=35))[6]] == [
        ("79", "None")
    ]
