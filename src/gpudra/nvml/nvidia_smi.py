"""``nvidia-smi``, for what NVML has no call for: a GPU's CUDA time slice.  The only module of
gpudra that starts a process.

NVML's public API sets and reads time slices of vGPU schedulers only; the compute time slice
of a GPU is ``nvidia-smi compute-policy`` (``--set-timeslice``: 0=DEFAULT, 1=SHORT, 2=MEDIUM,
3=LONG, since CUDA 11.1 / R455 drivers, per its ``--help`` as NVIDIA quotes it in "Improving
GPU Utilization in Kubernetes" and in NVIDIA/k8s-device-plugin#354).  NVIDIA's DRA driver runs
exactly ``nvidia-smi compute-policy -i <uuid> --set-timeslice <n>`` once per full GPU
(kubernetes-sigs/dra-driver-nvidia-gpu, ``cmd/gpu-kubelet-plugin/nvlib.go`` ``setTimeSlice``;
its ``sharing.go``: "`uuids` must be full-GPU (non-MIG) UUIDs"), and so does this module.

The exit status is typed as nvidia-smi's manual lists it (RETURN VALUE,
https://docs.nvidia.com/deploy/nvidia-smi/): 2 invalid argument -> InvalidArgument, 3 "not
available on target device" -> NotSupported (old GPUs refuse time slices this way:
kubernetes-sigs/dra-driver-nvidia-gpu#41, a Tesla P4), 6 "a query to find an object was
unsuccessful" -> DeviceNotFound, 12 NVML library not found -> LibraryNotFound, 15 "fallen off
the bus" -> GpuLost.  Any other exit, a missing binary or one that cannot be started is
ToolFailed, no answer within the timeout is ToolTimedOut (retryable); every message carries
what nvidia-smi printed (stderr, else stdout).
"""

from __future__ import annotations

import subprocess

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

DEFAULT_BINARY = "nvidia-smi"
DEFAULT_TIMEOUT_S = 10.0
_PRINTED_MAX = 2000  # characters of nvidia-smi's output kept in an error message

_EXIT_CODES: dict[int, type[NvmlError]] = {
    2: InvalidArgument,
    3: NotSupported,
    6: DeviceNotFound,
    12: LibraryNotFound,
    15: GpuLost,
}


class NvidiaSmi:
    """Runs ``binary`` (a name looked up on PATH, or a path) with a timeout per call."""

    def __init__(
        self, *, binary: str = DEFAULT_BINARY, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"nvidia-smi timeout must be > 0 seconds, got {timeout_s}")
        self.binary = binary
        self.timeout_s = timeout_s

    def set_time_slice(self, gpu_uuid: str, interval: Interval) -> None:
        """Set the CUDA time slice of one full GPU (not a MIG device)."""
        self.run(
            "compute-policy",
            "-i",
            gpu_uuid,
            "--set-timeslice",
            str(interval.nvidia_smi_value),
            what=f"set the time slice of GPU {gpu_uuid} to {interval.value}",
        )

    def run(self, *args: str, what: str) -> str:
        """Run nvidia-smi with ``args``; its stdout, or the typed error for what failed."""
        try:
            done = subprocess.run(
                [self.binary, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError as e:
            raise ToolFailed(
                f"{what}: {self.binary} not found (the NVIDIA driver's nvidia-smi must be "
                "on PATH, or its path given)"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise ToolTimedOut(
                f"{what}: {self.binary} did not answer within {self.timeout_s:g}s"
                f"{_said(_text(e.stderr) or _text(e.stdout))}"
            ) from e
        except OSError as e:
            raise ToolFailed(f"{what}: cannot run {self.binary}: {e.strerror or e}") from e
        if done.returncode != 0:
            error = _EXIT_CODES.get(done.returncode, ToolFailed)
            raise error(
                f"{what}: {self.binary} exited {done.returncode}{_said(done.stderr or done.stdout)}"
            )
        return done.stdout


def _text(out: str | bytes | None) -> str:
    if isinstance(out, bytes):
        return out.decode(errors="replace")
    return out or ""


def _said(printed: str) -> str:
    printed = printed.strip()
    if len(printed) > _PRINTED_MAX:
        printed = "..." + printed[-_PRINTED_MAX:]
    return f": {printed}" if printed else " (and printed nothing)"
