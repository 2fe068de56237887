"""The real GPU backend on NVML (``nvidia-ml-py``): the only module that imports pynvml.

One long-lived NVML session per backend.  Discovery is delegated to ``translate`` (which
takes the binding as an argument, so it can be unit-tested with a fake); this module owns
init/shutdown, MIG create/destroy and the XID event loop.  Each XID event carries NVML's GPU
recovery action read right after it (``recovery_action``, the same read: a driver without
the field gives None and never an error that would stop the health thread).

A GPU is isolated, not the node: when a GPU's handle or any per-GPU read fails (most often
``NVML_ERROR_GPU_IS_LOST``) that GPU alone is reported LOST (no MIG devices, no links) and
the others are read as usual, so one dead GPU neither fails discovery nor every prepare.  The
backend remembers each GPU's last good read, so a GPU lost later keeps its identity.

A GPU's CUDA time slice has no NVML call: NVML finds the GPU (unknown, lost) and refuses a
MIG device or a GPU in MIG mode, then ``nvidia_smi`` sets it.  The inventory reports no time
slice (None): reading one would be an nvidia-smi run per GPU on every inventory read.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pynvml

from gpudra.devices.faults import RecoveryAction
from gpudra.devices.gpu import Gpu, Health, MigDevice
from gpudra.devices.inventory import Inventory
from gpudra.devices.timeslice import Interval
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.errors import (
    DeviceNotFound,
    GpuLost,
    InvalidArgument,
    LibraryNotFound,
    NotSupported,
    NvmlError,
)
from gpudra.nvml.nvidia_smi import DEFAULT_BINARY, DEFAULT_TIMEOUT_S, NvidiaSmi
from gpudra.nvml.recovery_action import read_recovery_action
from gpudra.nvml.translate import (
    CAPABILITIES,
    call,
    cuda_driver_version,
    optional,
    read_gpu,
    read_mig_devices,
    read_topology,
    text,
    translate_error,
    unreadable_gpu,
)

log = logging.getLogger(__name__)

LIBRARY_HINT = (
    "NVML library not found (libnvidia-ml.so.1); no NVIDIA driver here? use --backend mock"
)


class RealBackend:
    """Implements ``GpuBackend`` over NVML for the GPUs of this machine."""

    def __init__(
        self,
        *,
        node_name: str,
        lib: ModuleType | Any = None,
        sysfs: Path | None = None,
        capabilities: Path | None = None,
        nvidia_smi: str = DEFAULT_BINARY,
        nvidia_smi_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._lib: Any = lib if lib is not None else pynvml
        self._smi = NvidiaSmi(binary=nvidia_smi, timeout_s=nvidia_smi_timeout_s)
        self._node = node_name
        self._sysfs = sysfs or Path("/sys/bus/pci/devices")
        self._caps = capabilities or CAPABILITIES
        self._lock = threading.Lock()
        self._events: Any = None
        self._known: dict[int, Gpu] = {}  # the last good read of each GPU, by index
        self._lost: set[int] = set()  # indices now lost (logged once, when they become so)
        try:
            self._lib.nvmlInit()
        except self._lib.NVMLError as e:
            err = translate_error(self._lib, e, "initialise NVML")
            if isinstance(err, LibraryNotFound):
                raise LibraryNotFound(LIBRARY_HINT) from e
            raise err from e

    def inventory(self) -> Inventory:
        """Every GPU of the node; one that fails to answer is LOST, the others are unaffected.

        Only whole-system reads (GPU count, driver versions) fail the inventory."""
        lib = self._lib
        with self._lock:
            count = call(lib, "count GPUs", lib.nvmlDeviceGetCount)
            driver = text(call(lib, "driver version", lib.nvmlSystemGetDriverVersion))
            cuda = cuda_driver_version(lib)
            read: list[tuple[Gpu, Any]] = []
            migs: list[MigDevice] = []
            failed: dict[int, tuple[Any, NvmlError]] = {}
            for i in range(count):
                handle = None
                try:
                    handle = call(lib, f"GPU {i} handle", lib.nvmlDeviceGetHandleByIndex, i)
                    gpu = read_gpu(lib, i, handle, self._sysfs)
                    found = read_mig_devices(lib, gpu, handle, self._caps)
                except NvmlError as e:
                    failed[i] = (handle, e)
                    continue
                self._answered(gpu)
                read.append((gpu, handle))
                migs += found
            gpus = {g.index: g for g, _ in read}
            taken = {g.minor for g in gpus.values()} | {
                self._known[i].minor for i in failed if i in self._known
            }
            for i, (handle, err) in failed.items():
                gpus[i] = self._lost_gpu(i, handle, err, taken)
                taken.add(gpus[i].minor)
            return Inventory(
                node_name=self._node,
                driver_version=driver,
                cuda_driver_version=cuda,
                gpus=tuple(gpus[i] for i in range(count)),
                mig_devices=tuple(migs),
                topology=read_topology(
                    lib, [g for g, _ in read], [h for _, h in read], gpu_count=count
                ),
            )

    def _answered(self, gpu: Gpu) -> None:
        self._known[gpu.index] = gpu
        if gpu.index in self._lost:
            self._lost.discard(gpu.index)
            log.info("GPU %d (%s) answers again; advertising it", gpu.index, gpu.uuid)

    def _lost_gpu(self, index: int, handle: Any, err: NvmlError, taken: set[int]) -> Gpu:
        """The record of a GPU that failed: its last good read marked LOST (same identity),
        or the best record NVML still gives if it was never read."""
        known = self._known.get(index)
        if known is not None:
            gpu = known.model_copy(update={"health": Health.LOST})
        else:
            gpu = unreadable_gpu(self._lib, index, handle, taken)
        if index not in self._lost:
            self._lost.add(index)
            log.error("GPU %d (%s) is lost, no longer advertised: %s", index, gpu.uuid, err)
        return gpu

    def create_mig_device(self, gpu_uuid: str, profile: str, start: int) -> MigDevice:
        lib = self._lib
        inv = self.inventory()
        gpu = inv.gpu(gpu_uuid)
        if gpu is None:
            raise DeviceNotFound(f"no GPU {gpu_uuid} on this node")
        if gpu.health is Health.LOST:
            raise GpuLost(f"GPU {gpu.index} ({gpu.uuid}) is lost; cannot create a MIG device")
        family = gpu.mig_profiles()
        prof = family.profile(profile) if family else None
        if family is None or prof is None:
            raise NotSupported(
                f"GPU {gpu.index} ({gpu.product_name}) has no MIG profile {profile!r}"
            )
        why = inv.mig_violation(gpu, profile, start)
        if why is not None:
            raise InvalidArgument(why)
        with self._lock:
            handle = call(lib, "GPU handle", lib.nvmlDeviceGetHandleByUUID, gpu_uuid)
            info = call(
                lib,
                f"{profile} profile info",
                lib.nvmlDeviceGetGpuInstanceProfileInfo,
                handle,
                prof.nvml_profile,
            )
            placement = lib.c_nvmlGpuInstancePlacement_t()
            placement.start, placement.size = start, prof.memory_slices
            create = lib.nvmlDeviceCreateGpuInstanceWithPlacement
            gi = call(lib, f"create {profile} at {start}", create, handle, info.id, placement)
            try:
                ci_info = call(
                    lib,
                    "compute-instance profile",
                    lib.nvmlGpuInstanceGetComputeInstanceProfileInfo,
                    gi,
                    prof.ci_profile,
                    0,
                )
                call(
                    lib,
                    "create compute instance",
                    lib.nvmlGpuInstanceCreateComputeInstance,
                    gi,
                    ci_info.id,
                )
            except Exception:
                optional(lib, lib.nvmlGpuInstanceDestroy, gi)
                raise
            gi_id = call(lib, "GPU-instance info", lib.nvmlGpuInstanceGetInfo, gi).id
        for mig in self.inventory().migs_on(gpu):
            if mig.gpu_instance_id == gi_id:
                return mig
        raise DeviceNotFound(
            f"created GPU instance {gi_id} on GPU {gpu.index} but found no MIG device"
        )

    def destroy_mig_device(self, mig_uuid: str) -> None:
        lib = self._lib
        with self._lock:
            mig = call(lib, f"MIG device {mig_uuid}", lib.nvmlDeviceGetHandleByUUID, mig_uuid)
            parent = call(lib, "parent GPU", lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle, mig)
            gi_id = call(lib, "GPU-instance id", lib.nvmlDeviceGetGpuInstanceId, mig)
            ci_id = call(lib, "compute-instance id", lib.nvmlDeviceGetComputeInstanceId, mig)
            gi = call(lib, "GPU instance", lib.nvmlDeviceGetGpuInstanceById, parent, gi_id)
            ci = call(lib, "compute instance", lib.nvmlGpuInstanceGetComputeInstanceById, gi, ci_id)
            call(lib, f"destroy compute instance of {mig_uuid}", lib.nvmlComputeInstanceDestroy, ci)
            call(lib, f"destroy GPU instance of {mig_uuid}", lib.nvmlGpuInstanceDestroy, gi)

    def set_time_slice(self, gpu_uuid: str, interval: Interval) -> None:
        if gpu_uuid.startswith("MIG-"):
            raise NotSupported(f"{gpu_uuid} is a MIG device; time slices are set on full GPUs")
        lib = self._lib
        with self._lock:
            handle = call(lib, f"GPU {gpu_uuid}", lib.nvmlDeviceGetHandleByUUID, gpu_uuid)
            try:
                modes = call(lib, f"MIG mode of {gpu_uuid}", lib.nvmlDeviceGetMigMode, handle)
            except NotSupported:  # a GPU without MIG
                modes = None
        if modes is not None and modes[0] == 1:
            # NVIDIA's DRA driver sets time slices on full, non-MIG GPUs only (sources in
            # gpudra.nvml.nvidia_smi); in MIG mode CUDA runs on the MIG devices, so refuse
            # here rather than depend on what nvidia-smi answers
            raise NotSupported(f"GPU {gpu_uuid} is in MIG mode; its CUDA time slice cannot be set")
        self._smi.set_time_slice(gpu_uuid, interval)

    def _event_set(self) -> Any:
        lib = self._lib
        if self._events is None:
            events = call(lib, "create event set", lib.nvmlEventSetCreate)
            wanted = (
                lib.nvmlEventTypeXidCriticalError
                | getattr(lib, "nvmlEventTypeDoubleBitEccError", 0)
                | getattr(lib, "nvmlEventTypeSingleBitEccError", 0)
            )
            for i in range(call(lib, "count GPUs", lib.nvmlDeviceGetCount)):
                handle = optional(lib, lib.nvmlDeviceGetHandleByIndex, i)
                if handle is None:  # lost: its events could not be delivered anyway
                    continue
                supported = optional(lib, lib.nvmlDeviceGetSupportedEventTypes, handle) or 0
                if supported & wanted:
                    optional(lib, lib.nvmlDeviceRegisterEvents, handle, supported & wanted, events)
            self._events = events
        return self._events

    def wait_health_event(self, timeout_s: float) -> HealthEvent | None:
        lib = self._lib
        events = self._event_set()
        try:
            data = lib.nvmlEventSetWait_v2(events, int(timeout_s * 1000))
        except lib.NVMLError as e:
            err = translate_error(lib, e, "wait for GPU events")
            if getattr(e, "value", None) == getattr(lib, "NVML_ERROR_TIMEOUT", 10):
                return None
            if isinstance(err, GpuLost):
                return HealthEvent(kind=HealthEventKind.GPU_LOST, gpu_uuid=None)
            raise err from e
        uuid = optional(lib, lib.nvmlDeviceGetUUID, data.device)
        if uuid is None:
            return HealthEvent(kind=HealthEventKind.GPU_LOST, gpu_uuid=None)
        kind = HealthEventKind.XID
        event_type = int(getattr(data, "eventType", 0) or 0)
        if event_type & getattr(lib, "nvmlEventTypeDoubleBitEccError", 0):
            kind = HealthEventKind.ECC_DOUBLE_BIT
        elif event_type & getattr(lib, "nvmlEventTypeSingleBitEccError", 0):
            kind = HealthEventKind.ECC_SINGLE_BIT
        xid = kind is HealthEventKind.XID
        return HealthEvent(
            kind=kind,
            gpu_uuid=text(uuid),
            xid=int(data.eventData) if xid else None,
            gpu_instance_id=int(data.gpuInstanceId),
            compute_instance_id=int(data.computeInstanceId),
            recovery_action=read_recovery_action(lib, data.device) if xid else None,
        )

    def recovery_action(self, gpu_uuid: str) -> RecoveryAction | None:
        lib = self._lib
        handle = optional(lib, lib.nvmlDeviceGetHandleByUUID, gpu_uuid)
        return None if handle is None else read_recovery_action(lib, handle)

    def close(self) -> None:
        lib = self._lib
        if self._events is not None:
            optional(lib, lib.nvmlEventSetFree, self._events)
            self._events = None
        optional(lib, lib.nvmlShutdown)
