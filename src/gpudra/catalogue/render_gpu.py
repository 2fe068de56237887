"""A whole GPU as a slice device (pure), NVLink topology included.

One device per whole GPU, with attributes named like the NVIDIA reference driver
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

import itertools
from typing import Any

from gpudra.catalogue import attributes as attr
from gpudra.catalogue.names import gpu_device_name
from gpudra.devices.gpu import Gpu
from gpudra.devices.inventory import Inventory
from gpudra.devices.topology import Topology
from gpudra.resourceapi import (
    MAX_STRING_ATTRIBUTE,
    NUMA_NODE,
    PCI_BUS_ID,
    PCIE_ROOT,
    bool_attr,
    int_attr,
    quantity,
    string_attr,
    version_attr,
)

CLIQUE_SEARCH_LIMIT = 16  # exact maximal-clique partition up to this many GPUs


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


def gpu_attributes(inv: Inventory, gpu: Gpu) -> dict[str, Any]:
    """The attributes of the GPU a device is on: a whole GPU's own, and a MIG device's
    parent's (``render_mig``), so a selector on them matches both the same way."""
    attrs: dict[str, Any] = {
        attr.PRODUCT_NAME: string_attr(gpu.product_name),
        attr.ARCHITECTURE: string_attr(gpu.architecture),
        attr.CUDA_COMPUTE_CAPABILITY: version_attr(gpu.cuda_compute_capability),
        attr.DRIVER_VERSION: version_attr(inv.driver_version),
        PCI_BUS_ID: string_attr(gpu.pci_bus_id),
    }
    if gpu.numa_node is not None:
        attrs[attr.NUMA_NODE] = int_attr(gpu.numa_node)
        attrs[NUMA_NODE] = int_attr(gpu.numa_node)
    return attrs


def gpu_device(inv: Inventory, gpu: Gpu, groups: dict[int, str]) -> dict[str, Any]:
    topo = inv.topology
    attrs: dict[str, Any] = {
        attr.TYPE: string_attr(attr.TYPE_GPU),
        attr.UUID: string_attr(gpu.uuid),
        attr.INDEX: int_attr(gpu.index),
        attr.MINOR: int_attr(gpu.minor),
        attr.BRAND: string_attr(gpu.brand),
        **gpu_attributes(inv, gpu),
        attr.CUDA_DRIVER_VERSION: version_attr(inv.cuda_driver_version),
        attr.MIG_CAPABLE: bool_attr(gpu.mig_capable),
        attr.NVLINK_PEER_COUNT: int_attr(len(topo.peers(gpu.index))),
    }
    direct = [
        (b if a == gpu.index else a, n) for a, b, n in _direct_links(topo) if gpu.index in (a, b)
    ]
    if direct:
        peers = ",".join(f"{p}x{n}" for p, n in sorted(direct))
        if len(peers) <= MAX_STRING_ATTRIBUTE:
            attrs[attr.NVLINK_PEERS] = string_attr(peers)
    gbps = _link_gbps(topo, gpu.index)
    if gbps:
        attrs[attr.NVLINK_GBPS] = int_attr(int(gbps))
    if gpu.pcie_root:
        attrs[PCIE_ROOT] = string_attr(gpu.pcie_root)
    if gpu.index in groups:
        attrs[attr.NVLINK_GROUP] = string_attr(groups[gpu.index])
    for i, dom in enumerate(topo.nvswitch_domains):
        if gpu.index in dom.gpus:
            attrs[attr.NVLINK_DOMAIN] = string_attr(f"nvswitch-{i}")
            attrs[attr.NVLINK_DOMAIN_LINKS] = int_attr(dom.links_per_gpu)
    if topo.clique_id is not None:
        clique = f"{topo.cluster_uuid or 'cluster'}.{topo.clique_id}"
        attrs[attr.NVLINK_CLIQUE] = string_attr(clique)
    capacity: dict[str, Any] = {"memory": quantity(gpu.memory_bytes)}
    if gpu.multiprocessors:
        capacity["multiprocessors"] = quantity(gpu.multiprocessors)
    return {"name": gpu_device_name(gpu), "attributes": attrs, "capacity": capacity}


def nvlink_group_names(topo: Topology) -> dict[int, str]:
    """GPU index -> its ``nvlinkGroup`` value (GPUs in no group are absent)."""
    return {g: "gpus-" + "-".join(str(i) for i in grp) for grp in nvlink_groups(topo) for g in grp}
