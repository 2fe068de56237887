"""A stand-in for the ``pynvml`` module at the import seam: same names, in-memory GPUs.

Only what gpudra's real backend calls is implemented, with NVML's return conventions (raise
``NVMLError`` with a ``value`` code).  It lets the translation layer be tested without GPUs.

It fails the way NVML does: a ``lost`` GPU raises ``NVML_ERROR_GPU_IS_LOST`` from every call
on it or on its MIG devices, its handle lookup included; ``fail`` makes one named call on one
GPU raise a given code; a MIG instance marked ``busy`` (processes running on it) refuses
destroy with ``NVML_ERROR_IN_USE``.

Field values as pynvml has them: ``nvmlDeviceGetFieldValues(handle, fieldIds)`` returns a
ctypes array of ``c_nvmlFieldValue_t`` (the same fields and value union as pynvml's), one per
id, each with its own ``nvmlReturn``.  Only ``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`` has a
value: a GPU's ``recovery_action`` (an NVML number), or ``NVML_ERROR_NOT_SUPPORTED`` in that
entry when it is None (a driver before the field); the call itself raises only for the GPU
(lost, ``fail``).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_IN_USE = 19
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_UNKNOWN = 999
NVML_NVLINK_MAX_LINKS = 18
NVML_NVLINK_DEVICE_TYPE_GPU = 0
NVML_NVLINK_DEVICE_TYPE_SWITCH = 2
NVML_GPU_FABRIC_STATE_COMPLETED = 3
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_FI_DEV_GET_GPU_RECOVERY_ACTION = 230
NVML_GPU_RECOVERY_ACTION_NONE = 0
NVML_GPU_RECOVERY_ACTION_GPU_RESET = 1
NVML_GPU_RECOVERY_ACTION_NODE_REBOOT = 2
NVML_GPU_RECOVERY_ACTION_DRAIN_P2P = 3
NVML_GPU_RECOVERY_ACTION_DRAIN_AND_RESET = 4
nvmlEventTypeSingleBitEccError = 1
nvmlEventTypeDoubleBitEccError = 2
nvmlEventTypeXidCriticalError = 8


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    uuid: str
    bus: str
    name: str = "NVIDIA H100 80GB HBM3"
    mig: int | None = 0  # None: MIG not supported
    links: list[tuple[str, int]] = field(default_factory=list)  # (remote bus, device type)
    migs: list[dict[str, Any]] = field(default_factory=list)  # "busy": True refuses destroy
    lost: bool = False  # fallen off the bus: every call on it raises GPU_IS_LOST
    fail: dict[str, int] = field(default_factory=dict)  # nvml function name -> error code
    # NVML_GPU_RECOVERY_ACTION_* the field reads; None: NOT_SUPPORTED (a driver before 565)
    recovery_action: int | None = None

    def check(self, call: str) -> None:
        if self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if call in self.fail:
            raise NVMLError(self.fail[call])


def _gpu_of(x: Any) -> FakeGpu | None:
    """The GPU a handle belongs to: a GPU handle, or a MIG / GPU-instance handle of one."""
    if isinstance(x, FakeGpu):
        return x
    parent = getattr(x, "parent", None)
    return parent if isinstance(parent, FakeGpu) else None


def _per_gpu_faults(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap one NVML call: it fails if a handle it takes, or the one it returns (handle
    lookups), belongs to a lost GPU or one told to fail this call."""

    @functools.wraps(fn)
    def checked(self: FakeNvml, *args: Any) -> Any:
        for arg in args:
            gpu = _gpu_of(arg)
            if gpu is not None:
                gpu.check(name)
        out = fn(self, *args)
        gpu = _gpu_of(out)
        if gpu is not None:
            gpu.check(name)
        return out

    return checked


class c_nvmlGpuInstancePlacement_t:
    start = 0
    size = 0


class c_nvmlValue_t(ctypes.Union):
    _fields_ = [
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    ]


class c_nvmlFieldValue_t(ctypes.Structure):
    _fields_ = [
        ("fieldId", ctypes.c_uint32),
        ("scopeId", ctypes.c_uint32),
        ("timestamp", ctypes.c_int64),
        ("latencyUsec", ctypes.c_int64),
        ("valueType", ctypes.c_uint),
        ("nvmlReturn", ctypes.c_uint),
        ("value", c_nvmlValue_t),
    ]


class FakeNvml:
    """Use as ``RealBackend(lib=FakeNvml(...))``."""

    NVMLError = NVMLError
    c_nvmlGpuInstancePlacement_t = c_nvmlGpuInstancePlacement_t
    c_nvmlFieldValue_t = c_nvmlFieldValue_t

    def __init__(self, gpus: list[FakeGpu], *, present: bool = True) -> None:
        self.gpus = gpus
        self.present = present
        self.calls: list[str] = []
        self.events: list[Any] = []
        self.registered_masks: list[int] = []
        for name, value in globals().items():
            if name.startswith(("NVML_", "nvmlEventType")):
                setattr(self, name, value)

    def _gpu(self, h: Any) -> FakeGpu:
        if isinstance(h, FakeGpu):
            return h
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlInit(self) -> None:
        if not self.present:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        for g in self.gpus:
            if g.uuid == uuid:
                return g
            for m in g.migs:
                if m["uuid"] == uuid:
                    return SimpleNamespace(mig=m, parent=g)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, h: Any) -> bytes:
        return self._gpu(h).name.encode()

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return h.mig["uuid"] if isinstance(h, SimpleNamespace) else self._gpu(h).uuid

    def nvmlDeviceGetMinorNumber(self, h: Any) -> int:
        return self.gpus.index(self._gpu(h))

    def nvmlDeviceGetBrand(self, h: Any) -> int:
        return 14

    def nvmlDeviceGetArchitecture(self, h: Any) -> int:
        return 9

    def nvmlDeviceGetCudaComputeCapability(self, h: Any) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId=self._gpu(h).bus.encode())

    def nvmlDeviceGetNumaNodeId(self, h: Any) -> int:
        return self.gpus.index(self._gpu(h)) // 4

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        return SimpleNamespace(total=81559 * 1024 * 1024)

    def nvmlDeviceGetAttributes_v2(self, h: Any) -> Any:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:
        g = self._gpu(h)
        if g.mig is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [g.mig, g.mig]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, i: int) -> Any:
        g = self._gpu(h)
        if i >= len(g.migs):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return SimpleNamespace(mig=g.migs[i], parent=g)

    def nvmlDeviceGetGpuInstanceId(self, h: Any) -> int:
        return int(h.mig["gi"])

    def nvmlDeviceGetComputeInstanceId(self, h: Any) -> int:
        return 0

    def nvmlDeviceGetGpuInstanceById(self, h: Any, gi: int) -> Any:
        for m in self._gpu(h).migs:
            if m["gi"] == gi:
                return SimpleNamespace(mig=m, parent=h)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlGpuInstanceGetInfo(self, gi: Any) -> Any:
        m = gi.mig
        return SimpleNamespace(
            id=m["gi"],
            profileId=m["profileId"],
            placement=SimpleNamespace(start=m["start"], size=m["size"]),
        )

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: Any) -> FakeGpu:
        return h.parent  # type: ignore[no-any-return]

    def nvmlGpuInstanceGetComputeInstanceById(self, gi: Any, ci: int) -> Any:
        return gi

    def nvmlComputeInstanceDestroy(self, ci: Any) -> None:
        if ci.mig.get("busy"):
            raise NVMLError(NVML_ERROR_IN_USE)
        self.calls.append(f"destroy-ci {ci.mig['uuid']}")

    def nvmlGpuInstanceDestroy(self, gi: Any) -> None:
        if gi.mig.get("busy"):
            raise NVMLError(NVML_ERROR_IN_USE)
        self.calls.append(f"destroy-gi {gi.mig['uuid']}")
        gi.parent.migs.remove(gi.mig)

    def nvmlDeviceGetGpuInstanceProfileInfo(self, h: Any, profile: int) -> Any:
        return SimpleNamespace(id={0: 19, 1: 14, 2: 9, 3: 5, 4: 0, 7: 20, 9: 15}[profile])

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, h: Any, pid: int, pl: Any) -> Any:
        g = self._gpu(h)
        self.calls.append(f"create-gi {pid} {pl.start}:{pl.size}")
        gi = 1 + max((m["gi"] for m in g.migs), default=0)
        m = {
            "uuid": f"MIG-{g.uuid}-{gi}",
            "gi": gi,
            "profileId": pid,
            "start": pl.start,
            "size": pl.size,
        }
        g.migs.append(m)
        return SimpleNamespace(mig=m, parent=g)

    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, gi: Any, p: int, e: int) -> Any:
        return SimpleNamespace(id=p)

    def nvmlGpuInstanceCreateComputeInstance(self, gi: Any, cid: int) -> Any:
        self.calls.append(f"create-ci {cid}")
        return gi

    def nvmlDeviceGetNvLinkState(self, h: Any, link: int) -> int:
        if link >= len(self._gpu(h).links):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return 1

    def nvmlDeviceGetNvLinkVersion(self, h: Any, link: int) -> int:
        return 4

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: Any, link: int) -> Any:
        return SimpleNamespace(busId=self._gpu(h).links[link][0])

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h: Any, link: int) -> int:
        return self._gpu(h).links[link][1]

    def nvmlDeviceGetTopologyCommonAncestor(self, a: Any, b: Any) -> int:
        same = self.gpus.index(self._gpu(a)) // 4 == self.gpus.index(self._gpu(b)) // 4
        return 40 if same else 50

    def nvmlDeviceGetGpuFabricInfo(self, h: Any, info: Any) -> None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetFieldValues(self, h: Any, fieldIds: list[Any]) -> Any:  # noqa: N803
        g = self._gpu(h)
        values = (c_nvmlFieldValue_t * len(fieldIds))()
        for v, fid in zip(values, fieldIds, strict=True):
            v.fieldId, v.scopeId = fid if isinstance(fid, tuple) else (fid, 0)
            if v.fieldId != NVML_FI_DEV_GET_GPU_RECOVERY_ACTION or g.recovery_action is None:
                v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
                continue
            v.nvmlReturn, v.valueType = NVML_SUCCESS, NVML_VALUE_TYPE_UNSIGNED_INT
            v.value.uiVal = g.recovery_action
        return values

    def nvmlEventSetCreate(self) -> str:
        return "event-set"

    def nvmlDeviceGetSupportedEventTypes(self, h: Any) -> int:
        return 0xFF

    def nvmlDeviceRegisterEvents(self, h: Any, mask: int, es: Any) -> None:
        self.calls.append(f"register {self._gpu(h).uuid}")
        self.registered_masks.append(mask)

    def nvmlEventSetWait_v2(self, es: Any, timeout_ms: int) -> Any:
        if not self.events:
            raise NVMLError(NVML_ERROR_TIMEOUT)
        ev = self.events.pop(0)
        if isinstance(ev, NVMLError):
            raise ev
        return ev

    def nvmlEventSetFree(self, es: Any) -> None:
        self.calls.append("free-events")


for _name, _fn in list(vars(FakeNvml).items()):
    if _name.startswith("nvml") and callable(_fn):
        setattr(FakeNvml, _name, _per_gpu_faults(_name, _fn))


def two_linked() -> FakeNvml:
    """Two H100s joined by four NVLinks; GPU 0 has MIG on with one 3g.40gb instance."""
    a = FakeGpu(
        "GPU-a",
        "00000000:18:00.0",
        mig=1,
        links=[("00000000:2A:00.0", NVML_NVLINK_DEVICE_TYPE_GPU)] * 4,
        migs=[{"uuid": "MIG-a1", "gi": 1, "profileId": 9, "start": 4, "size": 4}],
    )
    b = FakeGpu(
        "GPU-b",
        "00000000:2A:00.0",
        mig=0,
        links=[("00000000:18:00.0", NVML_NVLINK_DEVICE_TYPE_GPU)] * 4,
    )
    return FakeNvml([a, b])


def switched(n: int = 8) -> FakeNvml:
    """``n`` GPUs (``GPU-0`` ...) on one NVSwitch fabric, 18 links each; PCIe NODE in fours."""
    return FakeNvml(
        [
            FakeGpu(
                f"GPU-{i}",
                f"00000000:{0x10 + i:02X}:00.0",
                mig=None,
                links=[("00000000:FF:00.0", NVML_NVLINK_DEVICE_TYPE_SWITCH)] * 18,
            )
            for i in range(n)
        ]
    )
