"""Turn a mock machine profile into the GPUs and topology a real node of that model would report.

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
from gpudra.nvml.mock.profile import MachineProfile

_NAMESPACE = uuid.UUID("5f0c7d52-7a51-4c36-9c1e-9c0d2b6f6a11")


def gpu_uuid(node_name: str, index: int) -> str:
    return f"GPU-{uuid.uuid5(_NAMESPACE, f'{node_name}/gpu/{index}')}"


def mig_uuid(parent_uuid: str, profile: str, start: int) -> str:
    return f"MIG-{uuid.uuid5(_NAMESPACE, f'{parent_uuid}/mig/{profile}/{start}')}"


def pci_bus_id(machine: MachineProfile, node_name: str, index: int) -> str:
    if machine.pci_bus_ids:
        return machine.pci_bus_ids[index].lower()
    digest = hashlib.sha256(f"{node_name}/{index}".encode()).digest()
    return f"0000:{(digest[0] | 0x01):02x}:00.0"


def pcie_root(machine: MachineProfile, index: int) -> str:
    """A root-complex id per (NUMA node, switch) so GPUs under one switch share it."""
    domain = pci_bus_id(machine, "", index).split(":", 1)[0]
    return f"pci{domain}:{0x10 * (machine.pcie_switches[index] + 1):02x}"


def build_gpus(machine: MachineProfile, node_name: str) -> list[Gpu]:
    spec = machine.gpu
    return [
        Gpu(
            index=i,
            minor=i,
            uuid=gpu_uuid(node_name, i),
            product_name=spec.product_name,
            brand=spec.brand,
            architecture=spec.architecture,
            cuda_compute_capability=spec.cuda_compute_capability,
            pci_bus_id=pci_bus_id(machine, node_name, i),
            pcie_root=pcie_root(machine, i),
            numa_node=machine.numa_nodes[i],
            memory_bytes=spec.memory_mib * 1024 * 1024,
            multiprocessors=spec.multiprocessors,
            mig_mode=machine.mig_mode_of(i),
            mig_family=spec.mig_family
            if machine.mig_mode_of(i) is not MigMode.UNSUPPORTED
            else None,
        )
        for i in range(machine.gpu_count)
    ]


def build_topology(machine: MachineProfile, clique_id: str | None = None) -> Topology:
    n = machine.gpu_count
    pcie = []
    for a, b in itertools.combinations(range(n), 2):
        if machine.pcie_switches[a] == machine.pcie_switches[b]:
            level = machine.same_switch_level
        elif machine.numa_nodes[a] == machine.numa_nodes[b]:
            level = machine.same_numa_level
        else:
            level = PcieLevel.SYS
        pcie.append(PciePair(a=a, b=b, level=level))
    nvlinks: list[NvLinkPair] = []
    domains: list[NvSwitchDomain] = []
    if machine.nvlink:
        bw = machine.nvlink.bandwidth_per_link_gbps
        nvlinks = [
            NvLinkPair(a=a, b=b, links=links, link_bandwidth_gbps=bw)
            for a, b, links in machine.nvlink.pairs
        ]
        if machine.nvlink.nvswitch:
            domains = [
                NvSwitchDomain(
                    gpus=tuple(range(n)),
                    links_per_gpu=machine.nvlink.nvswitch.links_per_gpu,
                    link_bandwidth_gbps=bw,
                )
            ]
    fabric = machine.fabric
    return Topology(
        gpu_count=n,
        nvlinks=tuple(nvlinks),
        nvswitch_domains=tuple(domains),
        pcie=tuple(pcie),
        clique_id=(clique_id or fabric.clique_id) if fabric else clique_id,
        cluster_uuid=fabric.cluster_uuid if fabric else None,
    )
