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

from gpudra.catalogue import attributes as attr
from gpudra.catalogue.names import counter_set_name, mig_device_name
from gpudra.catalogue.render_gpu import gpu_attributes
from gpudra.devices.gpu import Gpu
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MEMORY_SLICES, MigProfile, Placement
from gpudra.resourceapi import int_attr, quantity, string_attr


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
        attr.TYPE: string_attr(attr.TYPE_MIG),
        attr.PROFILE: string_attr(prof.name),
        attr.PARENT_UUID: string_attr(gpu.uuid),
        attr.PARENT_INDEX: int_attr(gpu.index),
        attr.PLACEMENT_START: int_attr(pl.start),
        attr.PLACEMENT_SIZE: int_attr(pl.size),
        **gpu_attributes(inv, gpu),
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
    if uuid is None:
        dev["consumesCounters"] = consumes(gpu, pl)
    else:
        attrs[attr.UUID] = string_attr(uuid)
    return dev


def whole_gpu_consumption(gpu: Gpu) -> list[dict[str, Any]]:
    return consumes(gpu, Placement(start=0, size=MEMORY_SLICES))
