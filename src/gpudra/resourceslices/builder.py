"""Inventory -> the desired ResourceSlices of one node's pool (pure).

One device per healthy whole GPU, with attributes named like the NVIDIA reference driver
(so users' claims port by changing the driver name) plus what it lacks: the GPU index and
the NVLink topology.  NVLink is encoded for ``matchAttribute``:

* ``nvlinkGroup``  - GPUs with the same value are all *pairwise* NVLink-connected.  The
  groups partition the node's GPUs into maximal cliques (largest first; ties by bandwidth,
  then lowest indices).  NVSwitch systems form one group; DGX-1V forms two quads {0-3},
  {4-7}.  A GPU without NVLink peers gets no group, so a claim that matches on it can
  never be satisfied by PCIe-only GPUs.
* ``nvlinkDomain`` - the NVSwitch domain id (all-to-all), absent without NVSwitch.
* ``nvlinkClique`` - multi-node NVLink clique ``<clusterUUID>.<cliqueID>`` (GB200).

The limit of the encoding: links between groups (DGX-1V's 0-4, 1-5, 2-6, 3-7) cannot be
asked for through ``matchAttribute``, and the scheduler does not prefer double links; the
gpudra controller's scoring does both.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from gpudra.devices.gpu import Gpu, Health, MigMode
from gpudra.devices.inventory import Inventory
from gpudra.devices.topology import Topology
from gpudra.resourceapi import (
    API_VERSION,
    MANAGED_TAINT,
    MAX_DEVICES_PER_SLICE,
    MAX_DEVICES_PER_SLICE_ADVANCED,
    MAX_STRING_ATTRIBUTE,
    PCI_BUS_ID,
    PCIE_ROOT,
    bool_attr,
    dns_label,
    int_attr,
    quantity,
    string_attr,
    version_attr,
)
from gpudra.resourceslices.mig import (
    MAX_COUNTER_SETS_PER_SLICE,
    counter_set,
    placement_devices,
    static_devices,
    whole_gpu_consumption,
)

CLIQUE_SEARCH_LIMIT = 16  # exact maximal-clique partition up to this many GPUs


def gpu_device_name(gpu: Gpu) -> str:
    return f"gpu-{gpu.minor}"


def nvlink_groups(topo: Topology) -> list[tuple[int, ...]]:
    """Partition GPUs into NVLink cliques of size >= 2 (see module docstring)."""
    remaining = list(range(topo.gpu_count))
    groups: list[tuple[int, ...]] = []
    if topo.gpu_count > CLIQUE_SEARCH_LIMIT:
        comps = topo.connected_components()
        return [tuple(sorted(c)) for c in comps if len(c) > 1 and _is_clique(topo, tuple(c))]
    while len(remaining) >= 2:
        best: tuple[int, ...] | None = None
        for size in range(len(remaining), 1, -1):
            cliques = [c for c in itertools.combinations(remaining, size) if _is_clique(topo, c)]
            if cliques:
                best = min(cliques, key=lambda c: (-topo.set_bandwidth(c), c))
                break
        if best is None:
            break
        groups.append(best)
        remaining = [g for g in remaining if g not in best]
    return groups


def _is_clique(topo: Topology, gpus: tuple[int, ...]) -> bool:
    return all(topo.nvlink_count(a, b) > 0 for a, b in itertools.combinations(gpus, 2))


def _direct_links(topo: Topology) -> list[tuple[int, int, int]]:
    """Explicit GPU-to-GPU links (not implied by an NVSwitch domain)."""
    return sorted((p.a, p.b, p.links) for p in topo.nvlinks)


def _link_gbps(topo: Topology, gpu: int) -> float:
    for p in topo.nvlinks:
        if gpu in (p.a, p.b):
            return p.link_bandwidth_gbps
    for d in topo.nvswitch_domains:
        if gpu in d.gpus:
            return d.link_bandwidth_gbps
    return 0.0


def gpu_device(inv: Inventory, gpu: Gpu, groups: dict[int, str]) -> dict[str, Any]:
    topo = inv.topology
    attrs: dict[str, Any] = {
        "type": string_attr("gpu"),
        "uuid": string_attr(gpu.uuid),
        "index": int_attr(gpu.index),
        "minor": int_attr(gpu.minor),
        "productName": string_attr(gpu.product_name),
        "brand": string_attr(gpu.brand),
        "architecture": string_attr(gpu.architecture),
        "cudaComputeCapability": version_attr(gpu.cuda_compute_capability),
        "driverVersion": version_attr(inv.driver_version),
        "cudaDriverVersion": version_attr(inv.cuda_driver_version),
        "migCapable": bool_attr(gpu.mig_capable),
        PCI_BUS_ID: string_attr(gpu.pci_bus_id),
        "nvlinkPeerCount": int_attr(len(topo.peers(gpu.index))),
    }
    direct = [
        (b if a == gpu.index else a, n) for a, b, n in _direct_links(topo) if gpu.index in (a, b)
    ]
    if direct:
        peers = ",".join(f"{p}x{n}" for p, n in sorted(direct))
        if len(peers) <= MAX_STRING_ATTRIBUTE:
            attrs["nvlinkPeers"] = string_attr(peers)
    gbps = _link_gbps(topo, gpu.index)
    if gbps:
        attrs["nvlinkGBps"] = int_attr(int(gbps))
    if gpu.pcie_root:
        attrs[PCIE_ROOT] = string_attr(gpu.pcie_root)
    if gpu.numa_node is not None:
        attrs["numaNode"] = int_attr(gpu.numa_node)
    if gpu.index in groups:
        attrs["nvlinkGroup"] = string_attr(groups[gpu.index])
    for i, dom in enumerate(topo.nvswitch_domains):
        if gpu.index in dom.gpus:
            attrs["nvlinkDomain"] = string_attr(f"nvswitch-{i}")
            attrs["nvlinkDomainLinks"] = int_attr(dom.links_per_gpu)
    if topo.clique_id is not None:
        attrs["nvlinkClique"] = string_attr(f"{topo.cluster_uuid or 'cluster'}.{topo.clique_id}")
    capacity: dict[str, Any] = {"memory": quantity(gpu.memory_bytes)}
    if gpu.multiprocessors:
        capacity["multiprocessors"] = quantity(gpu.multiprocessors)
    return {"name": gpu_device_name(gpu), "attributes": attrs, "capacity": capacity}


def desired_devices(inv: Inventory, managed: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The devices of the node's pool, in a stable order.  Lost GPUs are not advertised;
    GPUs in ``managed`` carry the controller-managed taint."""
    groups = {
        g: "gpus-" + "-".join(str(i) for i in grp)
        for grp in nvlink_groups(inv.topology)
        for g in grp
    }
    out = []
    for g in inv.gpus:
        if g.health is Health.LOST:
            continue
        dev = gpu_device(inv, g, groups)
        if g.index in managed:
            dev["taints"] = [dict(MANAGED_TAINT)]
        out.append(dev)
    return out


def _tainted(devices: list[dict[str, Any]], managed: bool) -> list[dict[str, Any]]:
    if managed:
        for d in devices:
            d["taints"] = [dict(MANAGED_TAINT)]
    return devices


def slice_name(node: str, driver: str, index: int) -> str:
    """Deterministic and unique per node: the readable part folds ``.`` and truncates (so
    ``gpu.node-1`` and ``gpu-node.1``, or two long names sharing 63 characters, would meet),
    hence a short hash of the exact node name."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    return f"{dns_label(node)}-{digest}-{dns_label(driver)}-{index}"


def desired_slices(
    inv: Inventory,
    *,
    driver: str,
    generation: int,
    owner: dict[str, Any] | None = None,
    max_devices: int = MAX_DEVICES_PER_SLICE,
    managed: frozenset[int] = frozenset(),
    dynamic_mig: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The complete ResourceSlice objects for the node's pool at ``generation``.

    GPUs in ``dynamic_mig`` (MIG-capable ones) are published as partitionable devices in the
    1.35+ layout (see ``resourceslices.mig``): counter sets in slices of their own, then one
    device slice per GPU holding the whole GPU and every MIG placement."""
    devices = desired_devices(inv, managed)
    # a lost GPU publishes nothing, its MIG placements included
    dynamic = [
        g
        for g in inv.gpus
        if g.index in dynamic_mig and g.mig_capable and g.health is not Health.LOST
    ]
    # static MIG: a MIG-enabled GPU not in dynamic mode is published as its existing MIG
    # devices instead of as a whole GPU (as the NVIDIA driver does)
    static = [
        g
        for g in inv.gpus
        if g.mig_mode is MigMode.ENABLED and g not in dynamic and g.health is not Health.LOST
    ]
    replaced = {gpu_device_name(g) for g in dynamic + static}
    plain = [d for d in devices if d["name"] not in replaced]
    for g in static:
        plain += _tainted(static_devices(inv, g), g.index in managed)
    if managed or dynamic:
        max_devices = min(max_devices, MAX_DEVICES_PER_SLICE_ADVANCED)
    specs: list[dict[str, Any]] = [
        {"devices": plain[i : i + max_devices]} for i in range(0, len(plain), max_devices)
    ]
    for i in range(0, len(dynamic), MAX_COUNTER_SETS_PER_SLICE):
        group = dynamic[i : i + MAX_COUNTER_SETS_PER_SLICE]
        specs.append({"sharedCounters": [counter_set(g) for g in group]})
    by_name = {d["name"]: d for d in devices}
    for g in dynamic:
        whole = by_name.get(gpu_device_name(g))
        gpu_devices = _tainted(placement_devices(inv, g), g.index in managed)
        if whole is not None:
            gpu_devices.insert(0, {**whole, "consumesCounters": whole_gpu_consumption(g)})
        specs.append({"devices": gpu_devices})
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
            "pool": {
                "name": inv.node_name,
                "generation": generation,
                "resourceSliceCount": len(specs),
            },
        }
        spec.update(body)
        out.append(
            {"apiVersion": API_VERSION, "kind": "ResourceSlice", "metadata": meta, "spec": spec}
        )
    return out
