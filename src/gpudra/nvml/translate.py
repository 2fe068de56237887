"""Translate what NVML reports into the device model.

Every function takes the NVML binding as an argument (``lib``: the ``pynvml`` module in
production, a fake in unit tests), so this module never imports pynvml itself; ``real``
owns that import.  Optional facts NVML cannot report on a given GPU become ``None``,
never a failed discovery; a GPU that cannot be read at all is ``real``'s to isolate (it
becomes LOST), and ``unreadable_gpu`` is the record of one never read.  Topology is computed
over the readable GPUs only, keeping their node indices.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gpudra.devices.gpu import Gpu, Health, MigDevice, MigMode
from gpudra.devices.mig import family_for_product
from gpudra.devices.topology import NvLinkPair, NvSwitchDomain, PcieLevel, PciePair, Topology
from gpudra.nvml.errors import (
    DeviceNotFound,
    GpuLost,
    InsufficientResources,
    InUse,
    InvalidArgument,
    LibraryNotFound,
    NotSupported,
    NvmlError,
)

T = TypeVar("T")

_BRANDS = {
    1: "Quadro",
    2: "Tesla",
    3: "NVS",
    4: "Grid",
    5: "GeForce",
    6: "Titan",
    7: "NVIDIA Virtual Applications",
    8: "NVIDIA Virtual PC",
    9: "NVIDIA Virtual Compute Server",
    10: "NVIDIA RTX Virtual Workstation",
    11: "NVIDIA Cloud Gaming",
    12: "Quadro RTX",
    13: "NVIDIA RTX",
    14: "NVIDIA",
    15: "GeForce RTX",
    16: "Titan RTX",
}
_ARCHS = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada Lovelace",
    9: "Hopper",
    10: "Blackwell",
}
# bidirectional GB/s per link, by NVLink version
_NVLINK_GBPS = {1: 40.0, 2: 50.0, 3: 50.0, 4: 50.0, 5: 50.0, 6: 50.0, 7: 100.0}
_TOPO_LEVELS = {
    0: PcieLevel.PIX,
    10: PcieLevel.PIX,
    20: PcieLevel.PXB,
    30: PcieLevel.PHB,
    40: PcieLevel.NODE,
    50: PcieLevel.SYS,
}


def translate_error(lib: Any, err: Exception, what: str) -> NvmlError:
    """The typed backend error for a pynvml ``NVMLError`` raised while doing ``what``."""
    code = getattr(err, "value", None)
    table: dict[Any, type[NvmlError]] = {
        getattr(lib, "NVML_ERROR_NOT_SUPPORTED", 3): NotSupported,
        getattr(lib, "NVML_ERROR_INVALID_ARGUMENT", 2): InvalidArgument,
        getattr(lib, "NVML_ERROR_INSUFFICIENT_RESOURCES", 23): InsufficientResources,
        getattr(lib, "NVML_ERROR_NOT_FOUND", 6): DeviceNotFound,
        getattr(lib, "NVML_ERROR_GPU_IS_LOST", 15): GpuLost,
        getattr(lib, "NVML_ERROR_IN_USE", 19): InUse,
        getattr(lib, "NVML_ERROR_LIBRARY_NOT_FOUND", 12): LibraryNotFound,
    }
    return table.get(code, NvmlError)(f"{what}: {err}")


def call(lib: Any, what: str, fn: Callable[..., T], *args: Any) -> T:
    """Call an NVML function, translating its error."""
    try:
        return fn(*args)
    except lib.NVMLError as e:
        raise translate_error(lib, e, what) from e


def optional(lib: Any, fn: Callable[..., T], *args: Any) -> T | None:
    """Call an NVML function whose answer is optional: None when NVML cannot say."""
    try:
        return fn(*args)
    except (lib.NVMLError, AttributeError):
        return None


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def normalize_bus_id(bus_id: str | bytes) -> str:
    """``00000000:18:00.0`` -> ``0000:18:00.0`` (the sysfs / Kubernetes spelling)."""
    raw = text(bus_id).strip().lower()
    domain, rest = raw.split(":", 1)
    return f"{int(domain, 16):04x}:{rest}"


def pcie_root_of(bus_id: str, sysfs: Path = Path("/sys/bus/pci/devices")) -> str | None:
    """The PCIe root complex (``pci0000:16``) above a device, from its sysfs path."""
    try:
        resolved = os.path.realpath(sysfs / bus_id)
    except OSError:
        return None
    parts = [p for p in Path(resolved).parts if p.startswith("pci")]
    return parts[0] if parts else None


def numa_node_of(lib: Any, handle: Any, bus_id: str, sysfs: Path) -> int | None:
    node = optional(lib, lib.nvmlDeviceGetNumaNodeId, handle)
    if node is None:
        try:
            node = int((sysfs / bus_id / "numa_node").read_text().strip())
        except (OSError, ValueError):
            return None
    return node if node >= 0 else None


def cuda_driver_version(lib: Any) -> str:
    v = call(lib, "read CUDA driver version", lib.nvmlSystemGetCudaDriverVersion)
    return f"{v // 1000}.{(v % 1000) // 10}"


def read_gpu(lib: Any, index: int, handle: Any, sysfs: Path) -> Gpu:
    name = text(call(lib, f"GPU {index} name", lib.nvmlDeviceGetName, handle))
    bus = normalize_bus_id(
        call(lib, f"GPU {index} PCI info", lib.nvmlDeviceGetPciInfo, handle).busId
    )
    major, minor = call(
        lib, f"GPU {index} compute capability", lib.nvmlDeviceGetCudaComputeCapability, handle
    )
    modes = optional(lib, lib.nvmlDeviceGetMigMode, handle)
    family = family_for_product(name)
    if modes is None:
        mig_mode = MigMode.UNSUPPORTED
    else:
        mig_mode = MigMode.ENABLED if modes[0] == 1 else MigMode.DISABLED
    attrs = optional(lib, lib.nvmlDeviceGetAttributes_v2, handle)
    sms = getattr(attrs, "multiprocessorCount", None) or None
    if sms is None and family is not None:
        # NVML reports SM counts only for MIG devices; the full-GPU (7g) profile has them all.
        sms = max(p.multiprocessors for p in family.profiles)
    return Gpu(
        index=index,
        minor=call(lib, f"GPU {index} minor number", lib.nvmlDeviceGetMinorNumber, handle),
        uuid=text(call(lib, f"GPU {index} UUID", lib.nvmlDeviceGetUUID, handle)),
        product_name=name,
        brand=_BRANDS.get(optional(lib, lib.nvmlDeviceGetBrand, handle) or 0, "Unknown"),
        architecture=_ARCHS.get(
            optional(lib, lib.nvmlDeviceGetArchitecture, handle) or 0, "Unknown"
        ),
        cuda_compute_capability=f"{major}.{minor}",
        pci_bus_id=bus,
        pcie_root=pcie_root_of(bus, sysfs),
        numa_node=numa_node_of(lib, handle, bus, sysfs),
        memory_bytes=call(lib, f"GPU {index} memory", lib.nvmlDeviceGetMemoryInfo, handle).total,
        multiprocessors=sms,
        mig_mode=mig_mode,
        mig_family=family.name if family and mig_mode is not MigMode.UNSUPPORTED else None,
    )


# what a GPU that was never read gets for the facts NVML no longer answers: visibly not real
# (the model requires some value), and the GPU is LOST, so none of it is ever advertised
UNREADABLE_UUID = "GPU-unreadable-{index}"
UNREADABLE_PRODUCT = "unknown (unreadable)"
UNREADABLE = "unknown"


def unreadable_gpu(lib: Any, index: int, handle: Any, taken_minors: set[int]) -> Gpu:
    """The best record of a GPU that failed before its first good read, health LOST.

    Whatever NVML still answers (UUID, minor, name, bus id) is kept; the rest are the
    placeholders above.  Without a minor from NVML the GPU takes the first minor from
    ``index`` up not in ``taken_minors``, so its device name collides with no other GPU's."""

    def ask(fn: Callable[..., T]) -> T | None:
        return None if handle is None else optional(lib, fn, handle)

    uuid = ask(lib.nvmlDeviceGetUUID)
    minor = ask(lib.nvmlDeviceGetMinorNumber)
    name = ask(lib.nvmlDeviceGetName)
    pci = ask(lib.nvmlDeviceGetPciInfo)
    memory = ask(lib.nvmlDeviceGetMemoryInfo)
    try:
        bus = normalize_bus_id(pci.busId) if pci is not None else UNREADABLE
    except (AttributeError, ValueError):
        bus = UNREADABLE
    if not isinstance(minor, int) or minor < 0:
        minor = next(m for m in itertools.count(index) if m not in taken_minors)
    total = getattr(memory, "total", 0)
    return Gpu(
        index=index,
        minor=minor,
        uuid=text(uuid) if uuid else UNREADABLE_UUID.format(index=index),
        product_name=text(name) if name else UNREADABLE_PRODUCT,
        brand="Unknown",
        architecture="Unknown",
        cuda_compute_capability=UNREADABLE,
        pci_bus_id=bus,
        memory_bytes=total if isinstance(total, int) and total > 0 else 1,  # model: > 0
        health=Health.LOST,
    )


CAPABILITIES = Path("/proc/driver/nvidia/capabilities")


def capability_minor(path: Path) -> int | None:
    """``DeviceFileMinor: N`` from an NVIDIA capability ``access`` file."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "DeviceFileMinor":
                return int(value.strip())
    except (OSError, ValueError):
        return None
    return None


def mig_capability_minors(caps: Path, gpu_minor: int, gi: int, ci: int) -> tuple[int, ...]:
    """The capability device minors a container needs to use one MIG device."""
    base = caps / f"gpu{gpu_minor}" / "mig" / f"gi{gi}"
    found = [capability_minor(base / "access"), capability_minor(base / f"ci{ci}" / "access")]
    return tuple(m for m in found if m is not None)


def read_mig_devices(lib: Any, gpu: Gpu, handle: Any, caps: Path = CAPABILITIES) -> list[MigDevice]:
    if gpu.mig_mode is not MigMode.ENABLED:
        return []
    family = gpu.mig_profiles()
    count = call(lib, f"GPU {gpu.index} MIG count", lib.nvmlDeviceGetMaxMigDeviceCount, handle)
    out = []
    for i in range(count):
        mig = optional(lib, lib.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
        if mig is None:
            continue
        gi_id = call(lib, "MIG GPU-instance id", lib.nvmlDeviceGetGpuInstanceId, mig)
        gi = call(lib, "GPU instance", lib.nvmlDeviceGetGpuInstanceById, handle, gi_id)
        info = call(lib, "GPU-instance info", lib.nvmlGpuInstanceGetInfo, gi)
        prof = (
            next((p for p in family.profiles if p.id == info.profileId), None) if family else None
        )
        ci_id = call(lib, "MIG CI id", lib.nvmlDeviceGetComputeInstanceId, mig)
        out.append(
            MigDevice(
                uuid=text(call(lib, "MIG UUID", lib.nvmlDeviceGetUUID, mig)),
                parent_uuid=gpu.uuid,
                parent_index=gpu.index,
                profile=prof.name if prof else f"profile-{info.profileId}",
                gpu_instance_id=gi_id,
                compute_instance_id=ci_id,
                placement_start=info.placement.start,
                placement_size=info.placement.size,
                capability_minors=mig_capability_minors(caps, gpu.minor, gi_id, ci_id),
            )
        )
    return out


def read_topology(lib: Any, gpus: list[Gpu], handles: list[Any], *, gpu_count: int) -> Topology:
    """The links among the readable ``gpus`` (with their ``handles``), by ``Gpu.index``.

    ``gpu_count`` counts every GPU of the node, unreadable ones too: those are absent from
    ``gpus`` and so have no links, but the others keep their indices."""
    by_bus = {g.pci_bus_id: g.index for g in gpus}
    links: dict[tuple[int, int], tuple[int, float]] = {}
    switch_links: dict[int, tuple[int, float]] = {}
    for gpu, handle in zip(gpus, handles, strict=True):
        for link in range(getattr(lib, "NVML_NVLINK_MAX_LINKS", 18)):
            state = optional(lib, lib.nvmlDeviceGetNvLinkState, handle, link)
            if state is None:
                break
            if state != 1:
                continue
            version = optional(lib, lib.nvmlDeviceGetNvLinkVersion, handle, link) or 4
            gbps = _NVLINK_GBPS.get(version, 50.0)
            remote = optional(lib, lib.nvmlDeviceGetNvLinkRemotePciInfo, handle, link)
            peer = by_bus.get(normalize_bus_id(remote.busId)) if remote is not None else None
            if peer is not None and peer != gpu.index:
                key = (min(gpu.index, peer), max(gpu.index, peer))
                if gpu.index < peer:
                    links[key] = (links.get(key, (0, gbps))[0] + 1, gbps)
                continue
            kind = optional(lib, lib.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
            if kind == getattr(lib, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2):
                n, _ = switch_links.get(gpu.index, (0, gbps))
                switch_links[gpu.index] = (n + 1, gbps)
    domains = []
    if len(switch_links) > 1:
        members = tuple(sorted(switch_links))
        domains.append(
            NvSwitchDomain(
                gpus=members,
                links_per_gpu=min(n for n, _ in switch_links.values()),
                link_bandwidth_gbps=min(b for _, b in switch_links.values()),
            )
        )
    pcie = []
    for (ga, ha), (gb, hb) in itertools.combinations(zip(gpus, handles, strict=True), 2):
        level = optional(lib, lib.nvmlDeviceGetTopologyCommonAncestor, ha, hb)
        pcie.append(
            PciePair(a=ga.index, b=gb.index, level=_TOPO_LEVELS.get(level or 50, PcieLevel.SYS))
        )
    clique, cluster = read_fabric(lib, handles[0]) if handles else (None, None)
    return Topology(
        gpu_count=gpu_count,
        nvlinks=tuple(
            NvLinkPair(a=a, b=b, links=n, link_bandwidth_gbps=bw)
            for (a, b), (n, bw) in sorted(links.items())
        ),
        nvswitch_domains=tuple(domains),
        pcie=tuple(pcie),
        clique_id=clique,
        cluster_uuid=cluster,
    )


def read_fabric(lib: Any, handle: Any) -> tuple[str | None, str | None]:
    """(clique id, cluster UUID) once the NVLink fabric is registered; (None, None) otherwise."""
    struct = getattr(lib, "c_nvmlGpuFabricInfo_t", None)
    if struct is None:
        return None, None
    info = struct()
    if optional(lib, lib.nvmlDeviceGetGpuFabricInfo, handle, info) is None:
        return None, None
    if info.state != getattr(lib, "NVML_GPU_FABRIC_STATE_COMPLETED", 3):
        return None, None
    raw = bytes(info.clusterUuid)
    if not any(raw):
        return None, None
    h = raw.hex()
    return str(info.cliqueId), f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
