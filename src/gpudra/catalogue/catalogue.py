"""The node catalogue (pure): every device of this node, as published and as prepared.

One ``NodeCatalogue`` answers, for the whole node daemon, what each GPU is (its *effective*
mode: whole, shared, static MIG or dynamic MIG, after the API server's capabilities are taken
into account) and, for every device name, both the slice device that is published and what
prepare needs (UUID, device nodes, physical footprint, MIG identity).  The slice builder
renders slices from it, prepare resolves names in it, and the stray-instance sweep reads its
modes, so what is published is exactly what can be prepared.

The modes:

* **dynamic MIG** - a MIG-capable GPU in ``--dynamic-mig-gpus``, on a server with the 1.35+
  partitionable-device layout: the whole GPU and every profile x placement are published,
  the instance is created at prepare.
* **static MIG** - a GPU with MIG mode enabled that is not in dynamic mode (including a
  dynamic-MIG GPU on a 1.34 server): its existing instances are published, used as they are.
* **shared** - a GPU in ``--shared-gpus`` that is not in either MIG mode, on a server with
  1.36+ consumable capacity (KEP-5075): the whole GPU, published once with
  ``allowMultipleAllocations`` and a memory share per claim (``render_shared``), so several
  claims get it; prepared like a whole GPU.  On an older server (the API server drops the
  fields) and on a GPU in MIG mode it is published as it would be without ``--shared-gpus``
  (``shared_refused``).
* **whole** - every other GPU.

A GPU outside the daemon's GPU set (``served``: the DRA plugin's ``--gpus``; the rest may be
the device plugin's) has a mode but no devices: it is neither published nor prepared, and the
stray-instance sweep leaves it alone.  A lost GPU keeps its mode; its devices stay in the
catalogue, unhealthy, so a claim for them is refused with that reason rather than as
unknown, and they are published only with a taint for the fault (``taints``: the node
daemon's ``gpudra.devices.faults``), so claims that hold them can be explained and no new
claim gets them.  Every device of a GPU carries its GPU's fault taints (MIG devices
inherit their parent's), after the controller-managed taint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gpudra.catalogue.names import gpu_device_name, mig_device_name
from gpudra.catalogue.render_gpu import gpu_device, nvlink_group_names
from gpudra.catalogue.render_mig import mig_device, whole_gpu_consumption
from gpudra.catalogue.render_shared import shared_gpu_device
from gpudra.devices.gpu import Gpu, Health, MigMode
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MEMORY_SLICES
from gpudra.resourceapi import MANAGED_TAINT

# the first minor whose ResourceSlices carry shared counters the way dynamic MIG needs them
PARTITIONABLE_SINCE_MINOR = 35
# the first minor with consumable capacity (DRAConsumableCapacity) on by default
CONSUMABLE_SINCE_MINOR = 36


class GpuMode(StrEnum):
    WHOLE = "whole"
    SHARED = "shared"  # the whole GPU, allocatable to several claims (consumable capacity)
    STATIC_MIG = "static-mig"
    DYNAMIC_MIG = "dynamic-mig"


class DeviceKind(StrEnum):
    GPU = "gpu"  # a whole GPU (shared or not)
    MIG = "mig"  # an existing MIG instance (static MIG)
    MIG_PLACEMENT = "mig-placement"  # a dynamic-MIG placement: prepare creates the instance


@dataclass(frozen=True)
class ServerCapabilities:
    """What the API server can take.  ``minor`` None: not known (yet); publishing assumes a
    current server, and nothing irreversible (the stray-instance sweep) is decided on it."""

    minor: int | None = None

    @property
    def known(self) -> bool:
        return self.minor is not None

    @property
    def partitionable(self) -> bool:
        return self.minor is None or self.minor >= PARTITIONABLE_SINCE_MINOR

    @property
    def consumable(self) -> bool:
        return self.minor is None or self.minor >= CONSUMABLE_SINCE_MINOR


@dataclass(frozen=True)
class MigIdentity:
    """Where a MIG device is: its parent GPU, profile and first memory slice."""

    parent_uuid: str
    profile: str
    start: int


@dataclass(frozen=True)
class CatalogueDevice:
    name: str
    kind: DeviceKind
    gpu_index: int
    uuid: str  # "" for a dynamic placement: the instance does not exist until prepare
    device_nodes: tuple[str, ...]
    healthy: bool
    # what it occupies physically: "<gpu uuid>/<memory slice>" (a whole GPU: all eight)
    footprint: tuple[str, ...]
    mig: MigIdentity | None = None
    # the device as published in the node's ResourceSlices; None when not published (lost)
    slice_device: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class NodeCatalogue:
    inventory: Inventory
    capabilities: ServerCapabilities
    modes: tuple[GpuMode, ...]  # by GPU index
    managed: frozenset[int]
    devices: Mapping[str, CatalogueDevice]  # in publishing order
    served: frozenset[int]  # the GPUs (indices) whose devices are in the catalogue
    # GPUs asked for in dynamic mode that the server's layout forced back to static MIG/whole
    dynamic_refused: frozenset[int] = frozenset()
    # GPUs asked for in shared mode published otherwise (a pre-1.36 server, or MIG mode)
    shared_refused: frozenset[int] = frozenset()

    def device(self, name: str) -> CatalogueDevice | None:
        return self.devices.get(name)

    def mode(self, gpu: Gpu) -> GpuMode:
        return self.modes[gpu.index]

    def gpus_in(self, mode: GpuMode) -> list[Gpu]:
        """The served GPUs in ``mode``."""
        return [
            g for g in self.inventory.gpus if self.modes[g.index] is mode and g.index in self.served
        ]

    def published(self, gpu: Gpu | None = None) -> list[dict[str, Any]]:
        """The slice devices (all of the node's, or one GPU's), in publishing order."""
        return [
            dict(d.slice_device)
            for d in self.devices.values()
            if d.slice_device is not None and (gpu is None or d.gpu_index == gpu.index)
        ]

    @property
    def publishes_dynamic_mig(self) -> bool:
        return any(
            m is GpuMode.DYNAMIC_MIG and g.health is not Health.LOST and g.index in self.served
            for g, m in zip(self.inventory.gpus, self.modes, strict=True)
        )


def effective_mode(
    gpu: Gpu, *, dynamic: bool, capabilities: ServerCapabilities, shared: bool = False
) -> GpuMode:
    """Dynamic MIG (asked for, and possible) > static MIG (MIG mode on) > shared (asked for,
    on a server with consumable capacity) > whole."""
    if dynamic and gpu.mig_capable and capabilities.partitionable:
        return GpuMode.DYNAMIC_MIG
    if gpu.mig_mode is MigMode.ENABLED:
        return GpuMode.STATIC_MIG
    if shared and capabilities.consumable:
        return GpuMode.SHARED
    return GpuMode.WHOLE


def _footprint(gpu: Gpu, slices: range) -> tuple[str, ...]:
    return tuple(f"{gpu.uuid}/{i}" for i in slices)


def _tainter(
    managed: bool, faults: Sequence[Mapping[str, Any]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    taints = ([dict(MANAGED_TAINT)] if managed else []) + [dict(t) for t in faults]

    def taint(dev: dict[str, Any]) -> dict[str, Any]:
        if taints:
            dev["taints"] = [dict(t) for t in taints]
        return dev

    return taint


def _gpu_devices(
    inv: Inventory,
    gpu: Gpu,
    mode: GpuMode,
    *,
    managed: bool,
    groups: dict[int, str],
    faults: Sequence[Mapping[str, Any]] = (),
    shares: int = 0,
) -> list[CatalogueDevice]:
    """The catalogue entries of one GPU (publishing order within the GPU)."""
    _taint = _tainter(managed, faults)
    published = gpu.health is not Health.LOST or bool(faults)
    healthy = gpu.health is Health.HEALTHY
    node = (f"/dev/nvidia{gpu.minor}",)
    out: list[CatalogueDevice] = []
    family = gpu.mig_profiles()
    if mode is not GpuMode.STATIC_MIG:
        whole: dict[str, Any] | None = None
        if published and mode is GpuMode.SHARED:
            whole = shared_gpu_device(inv, gpu, groups, shares=shares)
        elif published:
            whole = gpu_device(inv, gpu, groups)
        if whole is not None:
            _taint(whole)
            if mode is GpuMode.DYNAMIC_MIG:
                whole["consumesCounters"] = whole_gpu_consumption(gpu)
        out.append(
            CatalogueDevice(
                name=gpu_device_name(gpu),
                kind=DeviceKind.GPU,
                gpu_index=gpu.index,
                uuid=gpu.uuid,
                device_nodes=node,
                healthy=healthy,
                footprint=_footprint(gpu, range(MEMORY_SLICES)),
                slice_device=whole,
            )
        )
    if family is None:
        return out
    if mode is GpuMode.DYNAMIC_MIG:
        for prof in family.profiles:
            for pl in prof.placements():
                dev = mig_device(inv, gpu, prof, pl) if published else None
                out.append(
                    CatalogueDevice(
                        name=mig_device_name(gpu, prof, pl.start),
                        kind=DeviceKind.MIG_PLACEMENT,
                        gpu_index=gpu.index,
                        uuid="",
                        device_nodes=node,
                        healthy=healthy,
                        footprint=_footprint(gpu, pl.slices),
                        mig=MigIdentity(gpu.uuid, prof.name, pl.start),
                        slice_device=_taint(dev) if dev else None,
                    )
                )
    elif mode is GpuMode.STATIC_MIG:
        for m in inv.migs_on(gpu):
            known = family.profile(m.profile)
            if known is None:
                continue  # a profile gpudra does not know is not published
            dev = mig_device(inv, gpu, known, m.placement, uuid=m.uuid) if published else None
            out.append(
                CatalogueDevice(
                    name=mig_device_name(gpu, known, m.placement_start),
                    kind=DeviceKind.MIG,
                    gpu_index=gpu.index,
                    uuid=m.uuid,
                    device_nodes=node + m.capability_nodes,
                    healthy=healthy,
                    footprint=_footprint(gpu, m.placement.slices),
                    mig=MigIdentity(gpu.uuid, known.name, m.placement_start),
                    slice_device=_taint(dev) if dev else None,
                )
            )
    return out


def build_catalogue(
    inv: Inventory,
    *,
    dynamic: frozenset[int] = frozenset(),
    managed: frozenset[int] = frozenset(),
    capabilities: ServerCapabilities = ServerCapabilities(),
    served: frozenset[int] | None = None,
    taints: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    shared: frozenset[int] = frozenset(),
    shares: int = 0,
) -> NodeCatalogue:
    """The catalogue of ``inv``: GPUs in ``dynamic`` in dynamic-MIG mode where the GPU and the
    server allow it, GPUs in ``shared`` in shared mode where the server allows it and no MIG
    mode takes them (``shares``: the number of claims a shared GPU takes, 0: no limit but its
    memory), GPUs in ``managed`` tainted for the gpudra controller, only the GPUs in
    ``served`` (None: all) with devices, each GPU's devices with its ``taints`` (GPU index ->
    fault taints; a lost GPU is published only with some).

    Publishing order: the whole GPUs and static MIG devices first (GPU order: whole GPUs, then
    shared GPUs, then each static-MIG GPU's instances), then each dynamic-MIG GPU (its whole
    GPU, then its placements), which is the order the slices are cut in."""
    modes = tuple(
        effective_mode(
            g, dynamic=g.index in dynamic, capabilities=capabilities, shared=g.index in shared
        )
        for g in inv.gpus
    )
    groups = nvlink_group_names(inv.topology)
    serves = frozenset(g.index for g in inv.gpus) if served is None else served
    per_gpu = {
        g.index: _gpu_devices(
            inv,
            g,
            modes[g.index],
            managed=g.index in managed,
            groups=groups,
            faults=(taints or {}).get(g.index, ()),
            shares=shares,
        )
        if g.index in serves
        else []
        for g in inv.gpus
    }
    order = (
        [g for g in inv.gpus if modes[g.index] is GpuMode.WHOLE]
        + [g for g in inv.gpus if modes[g.index] is GpuMode.SHARED]
        + [g for g in inv.gpus if modes[g.index] is GpuMode.STATIC_MIG]
        + [g for g in inv.gpus if modes[g.index] is GpuMode.DYNAMIC_MIG]
    )
    devices = {d.name: d for g in order for d in per_gpu[g.index]}
    refused = frozenset(
        g.index
        for g in inv.gpus
        if g.index in dynamic
        and g.index in serves
        and g.mig_capable
        and modes[g.index] is not GpuMode.DYNAMIC_MIG
    )
    return NodeCatalogue(
        inventory=inv,
        capabilities=capabilities,
        modes=modes,
        managed=managed,
        devices=devices,
        served=serves,
        dynamic_refused=refused,
        shared_refused=frozenset(
            g.index
            for g in inv.gpus
            if g.index in shared and g.index in serves and modes[g.index] is not GpuMode.SHARED
        ),
    )
