"""The mock behaves like NVML for MIG create/destroy and health faults, and its state is shared
between processes through the state file (as hardware is shared between daemon restarts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.devices.gpu import Health, MigMode
from gpudra.nvml.backend import HealthEventKind
from gpudra.nvml.errors import (
    DeviceNotFound,
    GpuLost,
    InsufficientResources,
    InUse,
    InvalidArgument,
    NotSupported,
)
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.nvml.mock.profile import MachineProfile


def mig_profile(name: str = "dgx-h100") -> MachineProfile:
    prof = load_machine(name)
    return prof.model_copy(update={"mig_modes": (MigMode.ENABLED,) * 7 + (MigMode.DISABLED,)})


@pytest.fixture
def backend(tmp_path: Path) -> MockBackend:
    return MockBackend(mig_profile(), node_name="n", state_file=tmp_path / "state.json")


def test_create_and_destroy(backend: MockBackend) -> None:
    gpu = backend.inventory().gpus[0]
    a = backend.create_mig_device(gpu.uuid, "3g.40gb", 0)
    b = backend.create_mig_device(gpu.uuid, "1g.10gb", 4)
    inv = backend.inventory()
    assert [(m.profile, str(m.placement)) for m in inv.migs_on(gpu)] == [
        ("3g.40gb", "0:4"),
        ("1g.10gb", "4:1"),
    ]
    assert (a.gpu_instance_id, b.gpu_instance_id) == (1, 2)
    assert inv.free_mig_placements(gpu)["3g.40gb"] == []
    backend.destroy_mig_device(a.uuid)
    assert [m.uuid for m in backend.inventory().migs_on(gpu)] == [b.uuid]
    with pytest.raises(DeviceNotFound):
        backend.destroy_mig_device(a.uuid)


def test_uuid_is_stable_for_the_same_placement(backend: MockBackend) -> None:
    gpu = backend.inventory().gpus[0]
    first = backend.create_mig_device(gpu.uuid, "3g.40gb", 4)
    backend.destroy_mig_device(first.uuid)
    again = backend.create_mig_device(gpu.uuid, "3g.40gb", 4)
    assert again.uuid == first.uuid and again.uuid.startswith("MIG-")


REFUSALS = {
    "overlap": (0, "2g.20gb", 2, InsufficientResources, "overlaps 3g.40gb at 0:4"),
    "bad start": (0, "3g.40gb", 2, InvalidArgument, "allowed starts: 0, 4"),
    "unknown profile": (0, "5g.50gb", 0, InvalidArgument, "no MIG profile '5g.50gb'"),
    "mig disabled": (7, "1g.10gb", 0, NotSupported, "MIG mode is disabled on GPU 7"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_impossible_requests_are_refused_with_the_reason(backend: MockBackend, case: str) -> None:
    index, profile, start, error, message = REFUSALS[case]
    gpus = backend.inventory().gpus
    backend.create_mig_device(gpus[0].uuid, "3g.40gb", 0)
    with pytest.raises(error, match=message):
        backend.create_mig_device(gpus[index].uuid, profile, start)
    assert len(backend.inventory().mig_devices) == 1  # nothing half-created


def test_gpu_without_mig() -> None:
    b = MockBackend(load_machine("dgx1-v100"), node_name="n")
    with pytest.raises(NotSupported, match="does not support MIG"):
        b.create_mig_device(b.inventory().gpus[0].uuid, "1g.10gb", 0)


def test_state_is_shared_between_backends_on_one_state_file(tmp_path: Path) -> None:
    state = tmp_path / "node.json"
    one = MockBackend(mig_profile(), node_name="n", state_file=state)
    gpu = one.inventory().gpus[2]
    made = one.create_mig_device(gpu.uuid, "2g.20gb", 2)
    two = MockBackend(mig_profile(), node_name="n", state_file=state)  # e.g. a restarted daemon
    assert [m.uuid for m in two.inventory().mig_devices] == [made.uuid]
    two.destroy_mig_device(made.uuid)
    assert one.inventory().mig_devices == ()


def test_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "node.json"
    state.write_text("{not json")
    b = MockBackend(mig_profile(), node_name="n", state_file=state)
    with pytest.raises(Exception, match="mock state file is corrupt"):
        b.inventory()


def test_xid_event(backend: MockBackend) -> None:
    assert backend.wait_health_event(0.01) is None
    backend.inject_xid(3, 79)
    ev = backend.wait_health_event(1.0)
    assert ev is not None
    assert (ev.kind, ev.xid, ev.gpu_uuid) == (
        HealthEventKind.XID,
        79,
        backend.inventory().gpus[3].uuid,
    )
    assert backend.wait_health_event(0.01) is None


def test_gpu_falls_off_the_bus(backend: MockBackend) -> None:
    gpu = backend.inventory().gpus[1]
    made = backend.create_mig_device(gpu.uuid, "3g.40gb", 0)
    backend.fall_off_bus(1)
    ev = backend.wait_health_event(1.0)
    assert ev is not None and ev.kind is HealthEventKind.GPU_LOST and ev.gpu_uuid == gpu.uuid
    assert backend.inventory().gpus[1].health is Health.LOST
    assert backend.inventory().gpus[0].health is Health.HEALTHY
    with pytest.raises(GpuLost, match="fallen off the bus"):
        backend.create_mig_device(gpu.uuid, "1g.10gb", 4)
    with pytest.raises(GpuLost, match="fallen off the bus"):
        backend.destroy_mig_device(made.uuid)


def test_a_mig_device_with_processes_refuses_destroy(tmp_path: Path) -> None:
    state = tmp_path / "node.json"
    backend = MockBackend(mig_profile(), node_name="n", state_file=state)
    gpu = backend.inventory().gpus[0]
    made = backend.create_mig_device(gpu.uuid, "3g.40gb", 0)
    backend.run_process(made.uuid)
    restarted = MockBackend(mig_profile(), node_name="n", state_file=state)  # shared state
    with pytest.raises(InUse, match=r"has processes running.*NVML_ERROR_IN_USE") as caught:
        restarted.destroy_mig_device(made.uuid)
    assert caught.value.retryable
    assert [m.uuid for m in backend.inventory().mig_devices] == [made.uuid]
    backend.end_process(made.uuid)
    restarted.destroy_mig_device(made.uuid)
    assert backend.inventory().mig_devices == ()
    # the same placement gets the same UUID again: it must not come back busy
    again = backend.create_mig_device(gpu.uuid, "3g.40gb", 0)
    assert again.uuid == made.uuid
    backend.destroy_mig_device(again.uuid)


def test_processes_on_an_unknown_mig_device_are_refused(backend: MockBackend) -> None:
    with pytest.raises(DeviceNotFound, match="no MIG device MIG-nope"):
        backend.run_process("MIG-nope")
    with pytest.raises(DeviceNotFound, match="no MIG device MIG-nope"):
        backend.end_process("MIG-nope")


def test_a_state_file_from_before_busy_instances_still_reads(tmp_path: Path) -> None:
    state = tmp_path / "node.json"
    state.write_text('{"version": 1, "mig": [], "lost": [2], "events": [], "hangSeconds": 0}')
    b = MockBackend(mig_profile(), node_name="n", state_file=state)
    assert b.inventory().gpus[2].health is Health.LOST
    made = b.create_mig_device(b.inventory().gpus[0].uuid, "1g.10gb", 0)
    b.destroy_mig_device(made.uuid)


def test_fault_injection_checks_the_index(backend: MockBackend) -> None:
    with pytest.raises(DeviceNotFound, match="node n has 8"):
        backend.inject_xid(8, 13)
