"""The node catalogue -> the ResourceSlices of one node's pool (pure).

What each device looks like is the catalogue's (``gpudra.catalogue``); this module cuts
the published devices into slices and fills in the slice metadata.  Layout: the whole GPUs
(shared or not) and static MIG devices in slices of at most 128 devices (64 when any device
of the node has taints or counters, the 1.35+ limit for those); dynamic MIG in the 1.35+
partitionable layout: counter sets in slices of their own (at most 8 sets a slice), then one
device slice per dynamic-MIG GPU holding the whole GPU and every MIG placement.

The pool generation is not decided here: the publisher's plan (``reconcile.plan``) sets it
from the slices that exist.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gpudra.catalogue.catalogue import GpuMode, NodeCatalogue
from gpudra.catalogue.render_mig import counter_set
from gpudra.devices.gpu import Health
from gpudra.resourceapi import (
    API_VERSION,
    MAX_DEVICES_PER_SLICE,
    MAX_DEVICES_PER_SLICE_ADVANCED,
    dns_label,
)

MAX_COUNTER_SETS_PER_SLICE = 8


def slice_name(node: str, driver: str, index: int) -> str:
    """Deterministic and unique per node: the readable part folds ``.`` and truncates (so
    ``gpu.node-1`` and ``gpu-node.1``, or two long names sharing 63 characters, would meet),
    hence a short hash of the exact node name."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    return f"{dns_label(node)}-{digest}-{dns_label(driver)}-{index}"


def desired_slices(
    catalogue: NodeCatalogue,
    *,
    driver: str,
    owner: dict[str, Any] | None = None,
    max_devices: int = MAX_DEVICES_PER_SLICE,
) -> list[dict[str, Any]]:
    """The complete ResourceSlice objects of the node's pool (generation 0: see above)."""
    inv = catalogue.inventory
    dynamic = [g for g in catalogue.gpus_in(GpuMode.DYNAMIC_MIG) if g.health is not Health.LOST]
    plain = [
        d
        for mode in (GpuMode.WHOLE, GpuMode.SHARED, GpuMode.STATIC_MIG)
        for g in catalogue.gpus_in(mode)
        for d in catalogue.published(g)
    ]
    if catalogue.managed or dynamic:
        max_devices = min(max_devices, MAX_DEVICES_PER_SLICE_ADVANCED)
    specs: list[dict[str, Any]] = [
        {"devices": plain[i : i + max_devices]} for i in range(0, len(plain), max_devices)
    ]
    for i in range(0, len(dynamic), MAX_COUNTER_SETS_PER_SLICE):
        group = dynamic[i : i + MAX_COUNTER_SETS_PER_SLICE]
        specs.append({"sharedCounters": [counter_set(g) for g in group]})
    specs += [{"devices": catalogue.published(g)} for g in dynamic]
    specs = specs or [{"devices": []}]
    out = []
    for i, body in enumerate(specs):
        meta: dict[str, Any] = {
            "name": slice_name(inv.node_name, driver, i),
            "labels": {"app.kubernetes.io/managed-by": "gpudra"},
        }
        if owner:
            meta["ownerReferences"] = [owner]
        spec: dict[str, Any] = {
            "driver": driver,
            "nodeName": inv.node_name,
            "pool": {"name": inv.node_name, "generation": 0, "resourceSliceCount": len(specs)},
        }
        spec.update(body)
        out.append(
            {"apiVersion": API_VERSION, "kind": "ResourceSlice", "metadata": meta, "spec": spec}
        )
    return out
