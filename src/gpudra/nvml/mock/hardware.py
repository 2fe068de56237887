"""Turn a mock profile into the GPUs and topology a real node of that model would report.

Identities are deterministic: a GPU's UUID is derived from the node name and its index, a
MIG device's UUID from its parent and placement, so a restarted daemon (or a second process
looking at the same mock node) sees exactly the same devices.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid

from gpudra.devices.gpu import Gpu, MigMode
from gpudra.devices.topology import NvLinkPair, NvSwitchDomain, PcieLevel, PciePair, Topology
from gpudra.nvml.mock.profile import Profile

_NAMESPACE = uuid.UUID("5f0c7d52-7a51-4c36-9c1e-9c0d2b6f6a11")


def gpu_uuid(node_name: str, index: int) -> str:
    return f"GPU-{uuid.uuid5(_NAMESPACE, f'{node_name}/gpu/{index}')}"


def mig_uuid(parent_uuid: str, profile: str, start: int) -> str:
    return f"MIG-{uuid.uuid5(_NAMESPACE, f'{parent_uuid}/mig/{profile}/{start}')}"


def pci_bus_id(profile: Profile, node_name: str, index: int) -> str:
    if profile.pci_bus_ids:
        return profile.pci_bus_ids[index].lower()
    digest = hashlib.sha256(f"{node_name}/{index}".encode()).digest()
    return f"0000:{(digest[0] | 0x01):02x}:00.0"


def pcie_root(profile: Profile, index: int) -> str:
    """A root-complex id per (NUMA node, switch) so GPUs under one switch share it."""
    domain = pci_bus_id(profile, "", index).split(":", 1)[0]
    return f"pci{domain}:{0x10 * (profile.pcie_switches[index] + 1):02x}"


def build_gpus(profile: Profile, node_name: str) -> list[Gpu]:
    spec = profile.gpu
    return [
        Gpu(
            index=i,
            minor=i,
            uuid=gpu_uuid(node_name, i),
            product_name=spec.product_name,
            brand=spec.brand,
            architecture=spec.architecture,
            cuda_compute_capability=spec.cuda_compute_capability,
            pci_bus_id=pci_bus_id(profile, node_name, i),
            pcie_root=pcie_root(profile, i),
            numa_node=profile.numa_nodes[i],
            memory_bytes=spec.memory_mib * 1024 * 1024,
            multiprocessors=spec.multiprocessors,
            mig_mode=profile.mig_mode_of(i),
            mig_family=spec.mig_family
            if profile.mig_mode_of(i) is not MigMode.UNSUPPORTED
            else None,
        )
        for i in range(profile.gpu_count)
    ]


def build_topology(profile: Profile, clique_id: str | None = None) -> Topology:
    n = profile.gpu_count
    pcie = []
    for a, b in itertools.combinations(range(n), 2):
        if profile.pcie_switches[a] == profile.pcie_switches[b]:
            level = profile.same_switch_level
        elif profile.numa_nodes[a] == profile.numa_nodes[b]:
            level = profile.same_numa_level
        else:
            level = PcieLevel.SYS
        pcie.append(PciePair(a=a, b=b, level=level))
    nvlinks: list[NvLinkPair] = []
    domains: list[NvSwitchDomain] = []
    if profile.nvlink:
        bw = profile.nvlink.bandwidth_per_link_gbps
        nvlinks = [
            NvLinkPair(a=a, b=b, links=links, link_bandwidth_gbps=bw)
            for a, b, links in profile.nvlink.pairs
        ]
        if profile.nvlink.nvswitch:
            domains = [
                NvSwitchDomain(
                    gpus=tuple(range(n)),
                    links_per_gpu=profile.nvlink.nvswitch.links_per_gpu,
                    link_bandwidth_gbps=bw,
                )
            ]
    fabric = profile.fabric
    return Topology(
        gpu_count=n,
        nvlinks=tuple(nvlinks),
        nvswitch_domains=tuple(domains),
        pcie=tuple(pcie),
        clique_id=(clique_id or fabric.clique_id) if fabric else clique_id,
        cluster_uuid=fabric.cluster_uuid if fabric else None,
    )
