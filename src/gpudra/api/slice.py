"""``ResourceSlice``: a pool's devices as a driver publishes them (what the allocator reads).

Required fields (``driver``, ``pool.name``, a device's ``name``) are indexed, not defaulted:
the API server refuses a slice without them, so a missing one is a bug worth a KeyError.
"""

from __future__ import annotations

from typing import Any, TypedDict

from gpudra.api.meta import Object, ObjectMeta
from gpudra.api.taints import Taint


class Counter(TypedDict, total=False):
    value: str  # a quantity


class CounterSet(TypedDict, total=False):
    name: str
    counters: dict[str, Counter]


class DeviceCounterConsumption(TypedDict, total=False):
    counterSet: str
    counters: dict[str, Counter]


class SliceDevice(TypedDict, total=False):
    name: str
    attributes: dict[str, dict[str, Any]]  # name -> {"int"|"bool"|"string"|"version": value}
    capacity: dict[str, dict[str, Any]]
    consumesCounters: list[DeviceCounterConsumption]
    nodeName: str  # perDeviceNodeSelection
    taints: list[Taint]
    allowMultipleAllocations: bool  # consumable capacity: several claims may share it


class ResourcePool(TypedDict, total=False):
    name: str
    generation: int
    resourceSliceCount: int


class ResourceSliceSpec(TypedDict, total=False):
    driver: str
    pool: ResourcePool
    nodeName: str
    allNodes: bool
    nodeSelector: dict[str, Any]
    devices: list[SliceDevice]
    sharedCounters: list[CounterSet]


class ResourceSlice(TypedDict, total=False):
    metadata: ObjectMeta
    spec: ResourceSliceSpec


def slice_spec(s: Object) -> ResourceSliceSpec:
    spec: ResourceSliceSpec = s["spec"]
    return spec


def slice_driver(s: Object) -> str:
    return slice_spec(s)["driver"]


def slice_pool(s: Object) -> ResourcePool:
    return slice_spec(s)["pool"]


def slice_pool_name(s: Object) -> str:
    return slice_pool(s)["name"]


def slice_generation(s: Object) -> int:
    return int(slice_pool(s).get("generation", 0))


def slice_count(s: Object) -> int:
    """``pool.resourceSliceCount``: how many slices the pool's generation has (default 1)."""
    return int(slice_pool(s).get("resourceSliceCount", 1))


def slice_node_name(s: Object) -> str | None:
    """The node of a node-local slice (None for shared pools)."""
    return slice_spec(s).get("nodeName")


def slice_devices(s: Object) -> list[SliceDevice]:
    return slice_spec(s).get("devices") or []


def slice_shared_counters(s: Object) -> list[CounterSet]:
    return slice_spec(s).get("sharedCounters") or []


def device_taints(device: SliceDevice) -> list[Taint]:
    return device.get("taints") or []
