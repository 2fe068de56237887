"""Dynamic MIG as partitionable devices (pure): counter sets and placement devices.

Each dynamic-MIG GPU gets a counter set ``gpu-<minor>-counter-set`` with one counter per
memory slice (``memory-slice-0`` .. ``-7``, value 1).  Every profile x placement is a device
that consumes the memory slices it covers, and the whole GPU consumes all eight, so two
overlapping placements (or a placement and the whole GPU) can never be allocated together.
The MIG instance itself is created when a claim is prepared.  Layout (1.35+): counters in a
slice of their own (at most 8 sets per slice), one device slice per GPU.
"""

from __future__ import annotations

from typing import Any

from gpudra.devices.gpu import Gpu
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MEMORY_SLICES, MigProfile, Placement
from gpudra.resourceapi import PCI_BUS_ID, int_attr, quantity, string_attr, version_attr

MAX_COUNTER_SETS_PER_SLICE = 8


def counter_set_name(gpu: Gpu) -> str:
    return f"gpu-{gpu.minor}-counter-set"


def mig_device_name(gpu: Gpu, profile: MigProfile, start: int) -> str:
    label = profile.name.replace(".", "").replace("+", "-")
    return f"gpu-{gpu.minor}-mig-{label}-{profile.id}-{start}"


def parse_mig_device_name(name: str) -> tuple[int, int, int] | None:
    """``gpu-3-mig-3g40gb-9-4`` -> (minor 3, profile id 9, start 4); None if not a MIG name."""
    parts = name.split("-")
    if len(parts) < 6 or parts[0] != "gpu" or parts[2] != "mig":
        return None
    try:
        return int(parts[1]), int(parts[-2]), int(parts[-1])
    except ValueError:
        return None


def counter_set(gpu: Gpu) -> dict[str, Any]:
    return {
        "name": counter_set_name(gpu),
        "counters": {f"memory-slice-{i}": {"value": "1"} for i in range(MEMORY_SLICES)},
    }


def consumes(gpu: Gpu, placement: Placement) -> list[dict[str, Any]]:
    return [
        {
            "counterSet": counter_set_name(gpu),
            "counters": {f"memory-slice-{i}": {"value": "1"} for i in placement.slices},
        }
    ]


def placement_devices(inv: Inventory, gpu: Gpu) -> list[dict[str, Any]]:
    """One device per profile x placement of a MIG-capable GPU (dynamic MIG)."""
    family = gpu.mig_profiles()
    if family is None:
        return []
    return [
        mig_device(inv, gpu, prof, pl, counters=True)
        for prof in family.profiles
        for pl in prof.placements()
    ]


def static_devices(inv: Inventory, gpu: Gpu) -> list[dict[str, Any]]:
    """The MIG devices that already exist on a GPU in static MIG mode (with their UUIDs)."""
    family = gpu.mig_profiles()
    out = []
    for m in inv.migs_on(gpu):
        prof = family.profile(m.profile) if family else None
        if prof is not None:
            dev = mig_device(inv, gpu, prof, m.placement, counters=False)
            dev["attributes"]["uuid"] = string_attr(m.uuid)
            out.append(dev)
    return out


def mig_device(
    inv: Inventory, gpu: Gpu, prof: MigProfile, pl: Placement, *, counters: bool
) -> dict[str, Any]:
    """A MIG device: attributes and capacities named as the NVIDIA reference driver names
    them, plus the placement; ``counters`` adds the memory-slice consumption."""
    attrs = {
        "type": string_attr("mig"),
        "profile": string_attr(prof.name),
        "parentUUID": string_attr(gpu.uuid),
        "parentIndex": int_attr(gpu.index),
        "placementStart": int_attr(pl.start),
        "placementSize": int_attr(pl.size),
        "productName": string_attr(gpu.product_name),
        "architecture": string_attr(gpu.architecture),
        "cudaComputeCapability": version_attr(gpu.cuda_compute_capability),
        "driverVersion": version_attr(inv.driver_version),
        PCI_BUS_ID: string_attr(gpu.pci_bus_id),
    }
    capacity = {
        "memory": quantity(prof.memory_mib * 1024 * 1024),
        "multiprocessors": quantity(prof.multiprocessors),
        "copyEngines": quantity(prof.copy_engines),
        "decoders": quantity(prof.decoders),
        "encoders": quantity(prof.encoders),
        "jpegEngines": quantity(prof.jpeg_engines),
        "ofaEngines": quantity(prof.ofa_engines),
    }
    dev: dict[str, Any] = {
        "name": mig_device_name(gpu, prof, pl.start),
        "attributes": attrs,
        "capacity": capacity,
    }
    if counters:
        dev["consumesCounters"] = consumes(gpu, pl)
    return dev


def whole_gpu_consumption(gpu: Gpu) -> list[dict[str, Any]]:
    return consumes(gpu, Placement(start=0, size=MEMORY_SLICES))
