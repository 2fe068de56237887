"""The mock's GPU recovery action behaves like NVML's field: none until given (a driver
without it), read with each XID as it is taken and on demand, shared through the state file,
unreadable on a lost GPU, forgotten on recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.backend import HealthEventKind
from gpudra.nvml.errors import DeviceNotFound
from gpudra.nvml.mock import MockBackend, load_machine


@pytest.fixture
def backend(tmp_path: Path) -> MockBackend:
    return MockBackend(load_machine("dgx-h100"), node_name="n", state_file=tmp_path / "s.json")


def test_by_default_the_driver_has_no_recovery_action_field(backend: MockBackend) -> None:
    uuids = [g.uuid for g in backend.inventory().gpus]
    assert [backend.recovery_action(u) for u in uuids] == [None] * 8
    backend.inject_xid(2, 79)
    ev = backend.wait_health_event(1.0)
    assert ev is not None and (ev.xid, ev.recovery_action) == (79, None)
    assert backend.recovery_action("GPU-nope") is None


def test_an_xid_with_an_action_carries_it_and_a_later_none_is_read(
    backend: MockBackend, tmp_path: Path
) -> None:
    uuid = backend.inventory().gpus[2].uuid
    backend.inject_xid(2, 79, recovery_action=RecoveryAction.GPU_RESET)
    ev = backend.wait_health_event(1.0)
    assert ev is not None and ev.kind is HealthEventKind.XID
    assert ev.recovery_action is RecoveryAction.GPU_RESET
    other = MockBackend(load_machine("dgx-h100"), node_name="n", state_file=tmp_path / "s.json")
    assert other.recovery_action(uuid) is RecoveryAction.GPU_RESET  # shared, like hardware
    assert other.recovery_action(backend.inventory().gpus[3].uuid) is None  # per GPU
    backend.set_recovery_action(2, RecoveryAction.NONE)
    assert other.recovery_action(uuid) is RecoveryAction.NONE
    assert backend.wait_health_event(0.01) is None  # setting it alone is no event


def test_the_action_is_read_when_the_event_is_taken(backend: MockBackend) -> None:
    backend.inject_xid(0, 48, recovery_action=RecoveryAction.NODE_REBOOT)
    backend.set_recovery_action(0, RecoveryAction.DRAIN_AND_RESET)  # before the daemon reads
    ev = backend.wait_health_event(1.0)
    assert ev is not None and ev.recovery_action is RecoveryAction.DRAIN_AND_RESET


def test_a_mig_xid_carries_its_gpus_action(backend: MockBackend) -> None:
    backend.inject_xid(1, 31, gpu_instance_id=3, recovery_action=RecoveryAction.DRAIN_P2P)
    ev = backend.wait_health_event(1.0)
    assert ev is not None and (ev.gpu_instance_id, ev.recovery_action) == (
        3,
        RecoveryAction.DRAIN_P2P,
    )


def test_a_lost_gpu_reads_no_action_and_recovery_forgets_it(backend: MockBackend) -> None:
    uuid = backend.inventory().gpus[4].uuid
    backend.set_recovery_action(4, RecoveryAction.GPU_RESET)
    backend.fall_off_bus(4)
    assert backend.recovery_action(uuid) is None
    backend.recover(4)
    assert backend.recovery_action(uuid) is None  # forgotten: back to "no field"
    with pytest.raises(DeviceNotFound):
        backend.set_recovery_action(8, RecoveryAction.NONE)


def test_a_state_file_from_before_recovery_actions_still_reads(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text('{"version": 1, "mig": [], "lost": [], "events": [], "hangSeconds": 0}')
    b = MockBackend(load_machine("dgx-h100"), node_name="n", state_file=state)
    assert b.recovery_action(b.inventory().gpus[0].uuid) is None
    b.set_recovery_action(0, RecoveryAction.NONE)
    assert '"recoveryActions": {\n  "0": "none"\n }' in state.read_text()
    assert b.recovery_action(b.inventory().gpus[0].uuid) is RecoveryAction.NONE
