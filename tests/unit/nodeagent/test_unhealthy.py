"""GPU health for ListAndWatch, on the DRA plugin's fault rules: lost GPUs, fatal and
application XIDs, ECC errors, damped recovery (also by NVML's recovery action reading NONE
again), unattributed events; one GPU's fault never touches another's verdict."""

from __future__ import annotations

from pathlib import Path

from gpudra.devices.faults import APPLICATION_XIDS, RecoveryAction
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from tests.unit.deviceplugin.nodes import mock


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_xids_mark_their_gpu_until_it_has_recovered_for_the_damping_time(tmp_path: Path) -> None:
    inv = mock("dgx-h100", tmp_path / "s.json").inventory()
    clock = Clock()
    h = FaultTracker(recovery_s=10, clock=clock)
    uuid = inv.gpus[3].uuid
    assert h.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=uuid, xid=79), inv)
    assert h.unhealthy(inv) == {3: "XID 79 (GPU has fallen off the bus)"}
    for xid in sorted(APPLICATION_XIDS):  # the application's fault, not the GPU's
        h.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[1].uuid, xid=xid), inv)
    h.event(HealthEvent(kind=HealthEventKind.ECC_SINGLE_BIT, gpu_uuid=inv.gpus[2].uuid), inv)
    assert h.unhealthy(inv) == {3: "XID 79 (GPU has fallen off the bus)"}
    assert h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), inv)
    clock.t += 9
    assert set(h.unhealthy(inv)) == {3} and not h.due()  # still damped
    clock.t += 1
    assert h.due() and h.unhealthy(inv) == {}


def test_a_fault_while_recovering_keeps_the_gpu_unhealthy(tmp_path: Path) -> None:
    inv = mock("dgx-h100", tmp_path / "s.json").inventory()
    clock = Clock()
    h = FaultTracker(recovery_s=10, clock=clock)
    uuid = inv.gpus[0].uuid
    h.event(HealthEvent(kind=HealthEventKind.ECC_DOUBLE_BIT, gpu_uuid=uuid), inv)
    h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), inv)
    clock.t += 5
    h.event(HealthEvent(kind=HealthEventKind.ECC_DOUBLE_BIT, gpu_uuid=uuid), inv)  # flaps
    clock.t += 30
    assert h.unhealthy(inv) == {0: "double-bit ECC error"}


def test_a_lost_gpu_is_unhealthy_while_lost_and_damped_after(tmp_path: Path) -> None:
    b = mock("dgx-h100", tmp_path / "s.json")
    clock = Clock()
    h = FaultTracker(recovery_s=10, clock=clock)
    b.fall_off_bus(6)
    assert h.inventory(b.inventory())
    assert h.unhealthy(b.inventory()) == {6: "NVML cannot read the GPU (lost)"}
    b.recover(6)
    assert h.inventory(b.inventory())  # readable again: the recovery starts
    assert h.unhealthy(b.inventory()) == {6: "GPU lost (NVML cannot reach it)"}
    clock.t += 10
    assert h.unhealthy(b.inventory()) == {}


def test_an_event_nvml_cannot_attribute_marks_every_gpu(tmp_path: Path) -> None:
    inv = mock("dgx-h100", tmp_path / "s.json").inventory()
    h = FaultTracker(recovery_s=0.0)
    h.event(HealthEvent(kind=HealthEventKind.GPU_LOST, gpu_uuid=None), inv)
    assert set(h.unhealthy(inv)) == set(range(8))
    h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=None), inv)
    assert h.unhealthy(inv) == {}


def test_nvmls_recovery_action_decides_and_none_ends_the_xid_after_damping(
    tmp_path: Path,
) -> None:
    inv = mock("dgx-h100", tmp_path / "s.json").inventory()
    clock = Clock()
    h = FaultTracker(recovery_s=10, clock=clock)
    a, b = inv.gpus[2].uuid, inv.gpus[7].uuid
    reset, none = RecoveryAction.GPU_RESET, RecoveryAction.NONE
    h.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=a, xid=13, recovery_action=reset), inv)
    h.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=b, xid=79, recovery_action=none), inv)
    assert h.unhealthy(inv) == {2: "XID 13 (graphics engine exception); NVML: needs a GPU reset"}
    assert sorted(h.xid_gpus()) == sorted([a, b])
    assert not h.recovery_actions({a: None}.get)  # NVML does not say: nothing changes
    assert h.recovery_actions({a: none}.get)
    clock.t += 9
    assert set(h.unhealthy(inv)) == {2} and not h.due()
    clock.t += 1
    assert h.due() and h.unhealthy(inv) == {}
