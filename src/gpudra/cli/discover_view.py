"""How ``gpudra discover`` presents an inventory: a JSON-ready document and a table for people.

Pure functions from an ``Inventory`` to data or text; the command does the IO.  Both show
each GPU's CUDA time slice as the backend reads it (``timeSlice``; null / ``-`` where it
cannot: the real backend).
"""

from __future__ import annotations

from typing import Any

from gpudra.devices.inventory import Inventory
from gpudra.devices.topology import Topology


def document(inv: Inventory) -> dict[str, Any]:
    """Everything discover reports, camelCase, stable key order."""
    gpus = []
    for gpu in inv.gpus:
        entry = gpu.to_wire()
        entry["memoryMiB"] = gpu.memory_bytes // (1024 * 1024)
        entry["migCapable"] = gpu.mig_capable
        entry["migDevices"] = [m.to_wire() for m in inv.migs_on(gpu)]
        entry["migPlacements"] = inv.free_mig_placements(gpu)
        entry["nvlinkPeers"] = inv.topology.peers(gpu.index)
        gpus.append(entry)
    topo = inv.topology
    return {
        "node": inv.node_name,
        "driverVersion": inv.driver_version,
        "cudaDriverVersion": inv.cuda_driver_version,
        "gpuCount": len(inv.gpus),
        "gpus": gpus,
        "nvlink": {
            "pairs": [
                {"a": a, "b": b, "links": n, "bandwidthGBps": topo.bandwidth_gbps(a, b)}
                for a, b, n in topo.linked_pairs()
            ],
            "nvswitchDomains": [d.to_wire() for d in topo.nvswitch_domains],
            "components": [sorted(c) for c in topo.connected_components()],
            "cliqueId": topo.clique_id,
            "clusterUuid": topo.cluster_uuid,
        },
        "pcie": [p.to_wire() for p in topo.pcie],
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def matrix(topo: Topology) -> list[str]:
    """An ``nvidia-smi topo -m`` style matrix: NV<n> for NVLinks, else the PCIe level."""
    n = topo.gpu_count
    head = ["", *[f"GPU{i}" for i in range(n)]]
    rows = [head]
    for a in range(n):
        row = [f"GPU{a}"]
        for b in range(n):
            if a == b:
                row.append("X")
            elif (links := topo.nvlink_count(a, b)) > 0:
                row.append(f"NV{links}")
            else:
                row.append(topo.pcie_level(a, b).value)
        rows.append(row)
    return _table(rows)


def table(inv: Inventory) -> str:
    out = [
        f"Node {inv.node_name}: {len(inv.gpus)} GPU(s), driver {inv.driver_version}, "
        f"CUDA {inv.cuda_driver_version}",
        "",
    ]
    rows = [
        [
            "IDX",
            "UUID",
            "PRODUCT",
            "ARCH",
            "CC",
            "MEMORY",
            "SMS",
            "NUMA",
            "PCI BUS",
            "MIG",
            "HEALTH",
            "TIMESLICE",
        ]
    ]
    for g in inv.gpus:
        rows.append(
            [
                str(g.index),
                g.uuid,
                g.product_name,
                g.architecture,
                g.cuda_compute_capability,
                _gib(g.memory_bytes),
                str(g.multiprocessors or "-"),
                "-" if g.numa_node is None else str(g.numa_node),
                g.pci_bus_id,
                g.mig_mode.value,
                g.health.value,
                g.time_slice.value if g.time_slice else "-",
            ]
        )
    out += _table(rows)
    for g in inv.gpus:
        if not g.mig_capable:
            continue
        out += ["", f"MIG on GPU {g.index} ({g.mig_family}, mode {g.mig_mode.value}):"]
        for m in inv.migs_on(g):
            out.append(f"  existing  {m.profile:<11} at {m.placement}  {m.uuid}")
        free = inv.free_mig_placements(g)
        prof_rows = [["  profile", "free placements (start:size)"]]
        prof_rows += [[f"  {name}", " ".join(pls) or "-"] for name, pls in free.items()]
        out += _table(prof_rows)
    topo = inv.topology
    out += ["", "Interconnect (NV<n> = n NVLinks, else the closest common PCIe ancestor):"]
    out += matrix(topo) if topo.gpu_count else ["  (no GPUs)"]
    if topo.nvswitch_domains:
        for d in topo.nvswitch_domains:
            bw = d.links_per_gpu * d.link_bandwidth_gbps
            out.append(
                f"NVSwitch domain: GPUs {list(d.gpus)}, "
                f"{d.links_per_gpu} links per GPU, {bw:g} GB/s"
            )
    if topo.clique_id:
        out.append(f"NVLink clique: {topo.clique_id} (cluster {topo.cluster_uuid})")
    out.append(
        "Legend: PIX one PCIe switch, PXB several switches, PHB host bridge, "
        "NODE same NUMA node, SYS across NUMA nodes"
    )
    return "\n".join(out) + "\n"
