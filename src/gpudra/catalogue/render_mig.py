"""MIG devices as slice devices (pure): attributes, capacities and counter consumption.

A static MIG device (an instance that exists) is published with its UUID.  Dynamic MIG uses
partitionable devices: each dynamic-MIG GPU gets a counter set ``gpu-<minor>-counter-set``
with one counter per memory slice (``memory-slice-0`` .. ``-7``, value 1); every profile x
placement is a device that consumes the memory slices it covers, and the whole GPU consumes
all eight, so two overlapping placements (or a placement and the whole GPU) can never be
allocated together.  The MIG instance itself is created when a claim is prepared.
"""

from __future__ import annotations

from typing import Any

from gpudra.catalogue.names import counter_set_name, mig_device_name
from gpudra.devices.gpu import Gpu
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MEMORY_SLICES, MigProfile, Placement
from gpudra.resourceapi import (
    NUMA_NODE,
    PCI_BUS_ID,
    int_attr,
    quantity,
    string_attr,
    version_attr,
)


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


def mig_device(
    inv: Inventory,
    gpu: Gpu,
    prof: MigProfile,
    pl: Placement,
    *,
    uuid: str | None = None,
) -> dict[str, Any]:
    """A MIG device: attributes and capacities named as the NVIDIA reference driver names
    them, plus the placement.  An existing instance (static MIG) carries its ``uuid``; a
    dynamic placement (no instance yet) consumes its memory slices instead."""
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
    if gpu.numa_node is not None:
        attrs["numaNode"] = int_attr(gpu.numa_node)
        attrs[NUMA_NODE] = int_attr(gpu.numa_node)
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
    if uuid is None:
        dev["consumesCounters"] = consumes(gpu, pl)
    else:
        attrs["uuid"] = string_attr(uuid)
    return dev


def whole_gpu_consumption(gpu: Gpu) -> list[dict[str, Any]]:
    return consumes(gpu, Placement(start=0, size=MEMORY_SLICES))
