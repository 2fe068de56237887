"""The real GPU backend on NVML (``nvidia-ml-py``): the only module that imports pynvml.

One long-lived NVML session per backend.  Discovery is delegated to ``translate`` (which
takes the binding as an argument, so it can be unit-tested with a fake); this module owns
init/shutdown, MIG create/destroy and the XID event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pynvml

from gpudra.devices.gpu import MigDevice
from gpudra.devices.inventory import Inventory
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.errors import GpuLost, InvalidArgument, LibraryNotFound, NotFound, NotSupported
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
)

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
    ) -> None:
        self._lib: Any = lib if lib is not None else pynvml
        self._node = node_name
        self._sysfs = sysfs or Path("/sys/bus/pci/devices")
        self._caps = capabilities or CAPABILITIES
        self._lock = threading.Lock()
        self._events: Any = None
        try:
            self._lib.nvmlInit()
        except self._lib.NVMLError as e:
            err = translate_error(self._lib, e, "initialise NVML")
            if isinstance(err, LibraryNotFound):
                raise LibraryNotFound(LIBRARY_HINT) from e
            raise err from e

    def _handles(self) -> list[Any]:
        lib = self._lib
        count = call(lib, "count GPUs", lib.nvmlDeviceGetCount)
        return [
            call(lib, f"GPU {i} handle", lib.nvmlDeviceGetHandleByIndex, i) for i in range(count)
        ]

    def inventory(self) -> Inventory:
        lib = self._lib
        with self._lock:
            handles = self._handles()
            gpus = [read_gpu(lib, i, h, self._sysfs) for i, h in enumerate(handles)]
            migs = [
                m
                for g, h in zip(gpus, handles, strict=True)
                for m in read_mig_devices(lib, g, h, self._caps)
            ]
            return Inventory(
                node_name=self._node,
                driver_version=text(call(lib, "driver version", lib.nvmlSystemGetDriverVersion)),
                cuda_driver_version=cuda_driver_version(lib),
                gpus=tuple(gpus),
                mig_devices=tuple(migs),
                topology=read_topology(lib, gpus, handles),
            )

    def create_mig_device(self, gpu_uuid: str, profile: str, start: int) -> MigDevice:
        lib = self._lib
        inv = self.inventory()
        gpu = inv.gpu(gpu_uuid)
        if gpu is None:
            raise NotFound(f"no GPU {gpu_uuid} on this node")
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
        raise NotFound(f"created GPU instance {gi_id} on GPU {gpu.index} but found no MIG device")

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

    def _event_set(self) -> Any:
        lib = self._lib
        if self._events is None:
            events = call(lib, "create event set", lib.nvmlEventSetCreate)
            wanted = lib.nvmlEventTypeXidCriticalError
            for handle in self._handles():
                supported = optional(lib, lib.nvmlDeviceGetSupportedEventTypes, handle) or 0
                if supported & wanted:
                    optional(lib, lib.nvmlDeviceRegisterEvents, handle, wanted, events)
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
        return HealthEvent(
            kind=HealthEventKind.XID,
            gpu_uuid=text(uuid),
            xid=int(data.eventData),
            gpu_instance_id=int(data.gpuInstanceId),
            compute_instance_id=int(data.computeInstanceId),
        )

    def close(self) -> None:
        lib = self._lib
        if self._events is not None:
            optional(lib, lib.nvmlEventSetFree, self._events)
            self._events = None
        optional(lib, lib.nvmlShutdown)
