"""The protocol every GPU backend implements, and the events it reports.

A backend owns the hardware seam: discovery (``inventory``), MIG create/destroy at an exact
placement, a GPU's CUDA time slice, a health-event stream, and NVML's GPU recovery action
(read with each XID and on demand, so the daemons can end a GPU's XID faults when the driver
says it is fine again).  Callers never see pynvml types.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from gpudra.common.model import Model
from gpudra.devices.faults import RecoveryAction
from gpudra.devices.gpu import MigDevice
from gpudra.devices.inventory import Inventory
from gpudra.devices.timeslice import Interval


class HealthEventKind(StrEnum):
    XID = "xid"
    ECC_DOUBLE_BIT = "ecc-double-bit"
    ECC_SINGLE_BIT = "ecc-single-bit"
    GPU_LOST = "gpu-lost"
    RECOVERED = "recovered"  # the GPU answers again and its faults are cleared


class HealthEvent(Model):
    """One health event: an XID or ECC error on a GPU (or a MIG device of it), a GPU lost, a
    GPU recovered.

    ``gpu_uuid`` is None when NVML could not say which GPU: it then concerns all of them.
    ``recovery_action`` (XIDs only) is what NVML said must be done for the GPU right after
    the XID; None where the driver has no such field or it could not be read.
    """

    kind: HealthEventKind
    gpu_uuid: str | None
    xid: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    recovery_action: RecoveryAction | None = None


class GpuBackend(Protocol):
    """What the node daemon needs from the GPUs of its node."""

    def inventory(self) -> Inventory:
        """GPUs, existing MIG devices and topology, read fresh.  A GPU that cannot be read is
        reported with health LOST (and no MIG devices); only whole-system failures raise."""
        ...

    def create_mig_device(self, gpu_uuid: str, profile: str, start: int) -> MigDevice:
        """Create a GPU instance of ``profile`` at memory slice ``start`` plus its full-size
        compute instance.  Raises NotSupported, InvalidArgument, InsufficientResources,
        GpuLost."""
        ...

    def destroy_mig_device(self, mig_uuid: str) -> None:
        """Destroy a MIG device (compute instance, then GPU instance).  DeviceNotFound if absent,
        InUse while processes run on it, GpuLost if its GPU is lost."""
        ...

    def set_time_slice(self, gpu_uuid: str, interval: Interval) -> None:
        """Set the CUDA time slice of a full GPU (``Interval.DEFAULT``: the driver's own);
        idempotent.  It lasts until set again or the GPU is reset.  Raises DeviceNotFound for
        an unknown UUID, GpuLost for a lost GPU, NotSupported for a MIG device, a GPU in MIG
        mode or one the driver cannot set it on; the real backend also ToolFailed /
        ToolTimedOut when ``nvidia-smi`` is missing, fails or hangs."""
        ...

    def wait_health_event(self, timeout_s: float) -> HealthEvent | None:
        """The next health event, or None after ``timeout_s`` without one."""
        ...

    def recovery_action(self, gpu_uuid: str) -> RecoveryAction | None:
        """NVML's GPU recovery action for the GPU now (``NONE``: nothing left to do).  None
        when NVML does not say: the driver lacks the field (before 565) or the GPU is unknown,
        lost or failing the read.  Never raises: it is advice, and the health threads that
        ask must not stop for it."""
        ...

    def close(self) -> None: ...
