"""GPU health for ListAndWatch: lost GPUs, fatal and ignored XIDs, recovery, unattributed
events; one GPU's fault never touches another's verdict."""

from __future__ import annotations

from pathlib import Path

from gpudra.deviceplugin.health import IGNORED_XIDS, GpuHealth
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from tests.unit.deviceplugin.nodes import mock


def test_xids_mark_their_gpu_until_it_recovers(tmp_path: Path) -> None:
    b = mock("dgx-h100", tmp_path / "s.json")
    inv = b.inventory()
    h = GpuHealth()
    uuid = inv.gpus[3].uuid
    assert h.event(HealthEvent(kind=HealthEventKind.XID, gpu_uuid=uuid, xid=79), inv)
    assert h.unhealthy(inv) == {3: "XID 79"}
    for xid in sorted(IGNORED_XIDS):  # the application's fault, not the GPU's
        assert not h.event(
            HealthEvent(kind=HealthEventKind.XID, gpu_uuid=inv.gpus[1].uuid, xid=xid), inv
        )
    assert h.unhealthy(inv) == {3: "XID 79"}
    assert h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), inv)
    assert h.unhealthy(inv) == {}
    assert not h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=uuid), inv)


def test_a_lost_gpu_is_unhealthy_for_as_long_as_the_inventory_says_so(tmp_path: Path) -> None:
    b = mock("dgx-h100", tmp_path / "s.json")
    h = GpuHealth()
    b.fall_off_bus(6)
    ev = b.wait_health_event(1.0)
    assert ev is not None and ev.kind is HealthEventKind.GPU_LOST
    assert h.event(ev, b.inventory())  # worth a refresh, but no mark of its own
    assert h.unhealthy(b.inventory()) == {6: "NVML cannot read the GPU (lost)"}
    b.recover(6)  # NVML reads it again: healthy, even before the recovered event is seen
    assert h.unhealthy(b.inventory()) == {}


def test_an_event_nvml_cannot_attribute_marks_every_gpu(tmp_path: Path) -> None:
    inv = mock("dgx-h100", tmp_path / "s.json").inventory()
    h = GpuHealth()
    h.event(HealthEvent(kind=HealthEventKind.GPU_LOST, gpu_uuid=None), inv)
    assert set(h.unhealthy(inv)) == set(range(8))
    h.event(HealthEvent(kind=HealthEventKind.RECOVERED, gpu_uuid=None), inv)
    assert h.unhealthy(inv) == {}
