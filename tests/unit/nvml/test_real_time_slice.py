"""The real backend sets a GPU's CUDA time slice with ``nvidia-smi compute-policy``: NVML
names the GPU first (unknown, lost, MIG refused without running nvidia-smi), then a fake
``nvidia-smi`` script records the argv it was given and answers with an exit status and
stderr; each failure becomes its typed error with what nvidia-smi printed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gpudra.devices.timeslice import Interval
from gpudra.nvml.errors import (
    DeviceNotFound,
    GpuLost,
    InvalidArgument,
    LibraryNotFound,
    NotSupported,
    NvmlError,
    ToolFailed,
    ToolTimedOut,
)
from gpudra.nvml.nvidia_smi import NvidiaSmi
from gpudra.nvml.real import RealBackend
from tests.unit.nvml.fake_pynvml import switched, two_linked


class FakeSmi:
    """An executable ``nvidia-smi`` in ``root`` that appends its argv (one per line, then
    ``--``) to ``argv.log``, prints ``stdout`` / ``stderr`` and exits ``code``."""

    def __init__(self, root: Path) -> None:
        self.path = root / "nvidia-smi"
        self.log = root / "argv.log"
        self.answer()

    def answer(
        self, code: int = 0, *, stderr: str = "", stdout: str = "", sleep: float = 0
    ) -> None:
        hang = f"exec sleep {sleep}" if sleep else ""
        self.path.write_text(
            "#!/bin/sh\n"
            f'for a in "$@"; do printf \'%s\\n\' "$a" >> {shlex.quote(str(self.log))}; done\n'
            f"echo -- >> {shlex.quote(str(self.log))}\n"
            f"{hang}\n"
            f"printf '%s' {shlex.quote(stdout)}\n"
            f"printf '%s' {shlex.quote(stderr)} >&2\n"
            f"exit {code}\n"
        )
        self.path.chmod(0o755)

    def runs(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        text = self.log.read_text()
        return [run.split("\n")[:-1] for run in text.split("--\n")[:-1]]


@pytest.fixture
def smi(tmp_path: Path) -> FakeSmi:
    return FakeSmi(tmp_path)


def backend(smi: FakeSmi, *, mig: bool = True, timeout_s: float = 10.0) -> RealBackend:
    """``two_linked`` (GPU-a in MIG mode, GPU-b MIG disabled) or ``switched`` (no MIG)."""
    lib = two_linked() if mig else switched(2)
    return RealBackend(
        node_name="n", lib=lib, nvidia_smi=str(smi.path), nvidia_smi_timeout_s=timeout_s
    )


@pytest.mark.parametrize("interval", list(Interval), ids=[i.value for i in Interval])
def test_each_interval_runs_nvidias_command(smi: FakeSmi, interval: Interval) -> None:
    backend(smi).set_time_slice("GPU-b", interval)
    assert smi.runs() == [
        ["compute-policy", "-i", "GPU-b", "--set-timeslice", str(interval.nvidia_smi_value)]
    ]


def test_a_gpu_without_mig_support_is_set(smi: FakeSmi) -> None:
    backend(smi, mig=False).set_time_slice("GPU-1", Interval.SHORT)
    assert smi.runs() == [["compute-policy", "-i", "GPU-1", "--set-timeslice", "1"]]


REFUSED_BEFORE_NVIDIA_SMI = {
    "GPU in MIG mode": ("GPU-a", NotSupported, "GPU GPU-a is in MIG mode"),
    "MIG device": ("MIG-a1", NotSupported, "MIG-a1 is a MIG device"),
    "unknown UUID": ("GPU-nope", DeviceNotFound, "GPU GPU-nope"),
}


@pytest.mark.parametrize("case", REFUSED_BEFORE_NVIDIA_SMI)
def test_refused_without_running_nvidia_smi(smi: FakeSmi, case: str) -> None:
    uuid, error, message = REFUSED_BEFORE_NVIDIA_SMI[case]
    with pytest.raises(error, match=message):
        backend(smi).set_time_slice(uuid, Interval.LONG)
    assert smi.runs() == []


def test_a_lost_gpu_raises_gpu_lost_without_running_nvidia_smi(smi: FakeSmi) -> None:
    b = backend(smi)
    b._lib.gpus[1].lost = True
    with pytest.raises(GpuLost):
        b.set_time_slice("GPU-b", Interval.LONG)
    assert smi.runs() == []


EXITS = {
    "not available on the device": (3, NotSupported),
    "fallen off the bus": (15, GpuLost),
    "not found": (6, DeviceNotFound),
    "invalid argument": (2, InvalidArgument),
    "no NVML library": (12, LibraryNotFound),
    "no permission": (4, ToolFailed),
    "internal error": (255, ToolFailed),
}


@pytest.mark.parametrize("case", EXITS)
def test_a_failed_exit_is_typed_and_carries_stderr(smi: FakeSmi, case: str) -> None:
    code, error = EXITS[case]
    smi.answer(code, stderr=f"Failed to set timeslice for GPU 00000000:2A:00.0: {case}\n")
    with pytest.raises(NvmlError) as caught:
        backend(smi).set_time_slice("GPU-b", Interval.MEDIUM)
    assert type(caught.value) is error
    assert f"exited {code}: Failed to set timeslice for GPU 00000000:2A:00.0: {case}" in str(
        caught.value
    )
    assert "set the time slice of GPU GPU-b to Medium" in str(caught.value)
    assert not caught.value.retryable


def test_stdout_stands_in_for_an_empty_stderr(smi: FakeSmi) -> None:
    smi.answer(3, stdout="Setting timeslice is not supported on GPU 00000000:2A:00.0.")
    with pytest.raises(NotSupported, match="exited 3: Setting timeslice is not supported"):
        backend(smi).set_time_slice("GPU-b", Interval.LONG)


def test_a_silent_failure_says_so(smi: FakeSmi) -> None:
    smi.answer(255)
    with pytest.raises(ToolFailed, match=r"exited 255 \(and printed nothing\)"):
        backend(smi).set_time_slice("GPU-b", Interval.LONG)


def test_a_hung_nvidia_smi_times_out_retryably(smi: FakeSmi) -> None:
    smi.answer(sleep=30)
    with pytest.raises(ToolTimedOut, match=r"did not answer within 0\.3s") as caught:
        backend(smi, timeout_s=0.3).set_time_slice("GPU-b", Interval.LONG)
    assert caught.value.retryable
    assert isinstance(caught.value, ToolFailed)


def test_a_missing_binary_is_tool_failed(tmp_path: Path) -> None:
    b = RealBackend(node_name="n", lib=two_linked(), nvidia_smi=str(tmp_path / "nope"))
    with pytest.raises(ToolFailed, match=r"nope not found \(the NVIDIA driver's nvidia-smi"):
        b.set_time_slice("GPU-b", Interval.LONG)


def test_a_binary_that_cannot_run_is_tool_failed(smi: FakeSmi) -> None:
    smi.path.chmod(0o644)
    with pytest.raises(ToolFailed, match=r"cannot run .*nvidia-smi: Permission denied"):
        backend(smi).set_time_slice("GPU-b", Interval.LONG)


def test_the_default_binary_is_nvidia_smi_on_path(
    smi: FakeSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{smi.path.parent}:/usr/bin:/bin")
    RealBackend(node_name="n", lib=two_linked()).set_time_slice("GPU-b", Interval.DEFAULT)
    assert smi.runs() == [["compute-policy", "-i", "GPU-b", "--set-timeslice", "0"]]
    assert NvidiaSmi().binary == "nvidia-smi" and NvidiaSmi().timeout_s == 10.0


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        NvidiaSmi(timeout_s=0)


def test_the_inventory_reports_no_time_slice(smi: FakeSmi) -> None:
    b = backend(smi)
    b.set_time_slice("GPU-b", Interval.LONG)
    assert [g.time_slice for g in b.inventory().gpus] == [None, None]
