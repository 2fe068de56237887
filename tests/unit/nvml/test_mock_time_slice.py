"""The mock's CUDA time slice behaves like the hardware's: Default until set, shared through
the state file by every process on the node, refused on a MIG device or a GPU in MIG mode
and on a lost GPU (unreadable there), back to Default when the GPU recovers; state files
written before the field read as all Default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudra.devices.timeslice import Interval
from gpudra.nvml.errors import DeviceNotFound, GpuLost, NotSupported
from gpudra.nvml.mock import MockBackend, load_machine


def mock(state: Path, profile: str = "dgx-h100") -> MockBackend:
    return MockBackend(load_machine(profile), node_name="n", state_file=state)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


def slices(b: MockBackend) -> list[Interval | None]:
    return [g.time_slice for g in b.inventory().gpus]


def test_every_gpu_starts_at_default(state: Path) -> None:
    assert slices(mock(state)) == [Interval.DEFAULT] * 8


def test_a_second_process_on_the_state_file_sees_what_was_set(state: Path) -> None:
    daemon, other = mock(state), mock(state)
    uuid = daemon.inventory().gpus[3].uuid
    daemon.set_time_slice(uuid, Interval.LONG)
    assert slices(other)[3] is Interval.LONG
    assert slices(other).count(Interval.DEFAULT) == 7  # per GPU
    other.set_time_slice(uuid, Interval.SHORT)
    assert slices(daemon)[3] is Interval.SHORT
    daemon.set_time_slice(uuid, Interval.SHORT)  # idempotent
    daemon.set_time_slice(uuid, Interval.DEFAULT)
    assert slices(other) == [Interval.DEFAULT] * 8
    assert json.loads(state.read_text())["timeSlices"] == {}


def test_without_a_state_file_it_lives_in_the_backend() -> None:
    b = MockBackend(load_machine("pcie-l4"), node_name="n")
    b.set_time_slice(b.inventory().gpus[0].uuid, Interval.MEDIUM)
    assert slices(b)[0] is Interval.MEDIUM


def test_a_lost_gpu_refuses_and_reads_none_and_recovery_resets_it(state: Path) -> None:
    b = mock(state)
    uuid = b.inventory().gpus[4].uuid
    b.set_time_slice(uuid, Interval.LONG)
    b.fall_off_bus(4)
    assert slices(b)[4] is None  # NVML cannot read a lost GPU
    with pytest.raises(GpuLost, match=r"GPU 4 .* has fallen off the bus"):
        b.set_time_slice(uuid, Interval.DEFAULT)
    b.recover(4)  # a reset: the driver's default again
    assert slices(b)[4] is Interval.DEFAULT


def test_a_gpu_in_mig_mode_refuses_and_one_with_mig_disabled_is_set(state: Path) -> None:
    b = mock(state, "dgx-h100-mixed")  # GPU 0 MIG disabled, GPU 1 enabled
    gpus = b.inventory().gpus
    with pytest.raises(NotSupported, match=r"GPU 1 .* is in MIG mode"):
        b.set_time_slice(gpus[1].uuid, Interval.LONG)
    b.set_time_slice(gpus[0].uuid, Interval.LONG)
    assert slices(b)[:2] == [Interval.LONG, Interval.DEFAULT]


def test_a_mig_device_refuses(state: Path) -> None:
    b = mock(state, "dgx-h100-mixed")
    mig = b.create_mig_device(b.inventory().gpus[1].uuid, "1g.10gb", 0)
    with pytest.raises(NotSupported, match=f"{mig.uuid} is a MIG device"):
        b.set_time_slice(mig.uuid, Interval.LONG)


def test_an_unknown_uuid_is_device_not_found(state: Path) -> None:
    with pytest.raises(DeviceNotFound, match="no GPU GPU-nope on node n"):
        mock(state).set_time_slice("GPU-nope", Interval.LONG)


def test_a_state_file_from_before_time_slices_reads_as_all_default(state: Path) -> None:
    state.write_text(
        '{"version": 1, "mig": [], "lost": [], "busy": [], "events": [], "hangSeconds": 0,'
        ' "recoveryActions": {}}'
    )
    b = mock(state)
    assert slices(b) == [Interval.DEFAULT] * 8
    b.set_time_slice(b.inventory().gpus[0].uuid, Interval.LONG)
    assert json.loads(state.read_text())["timeSlices"] == {"0": "Long"}
    assert slices(mock(state))[0] is Interval.LONG
