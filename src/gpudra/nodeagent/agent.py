"""A node daemon's agent, assembled the same way for both daemons: its liveness, the fault
tracker and the GPU watch over them, from the node settings both daemons share."""

from __future__ import annotations

from dataclasses import dataclass

from gpudra.devices.faults import TaintEffect
from gpudra.devices.inventory import Inventory
from gpudra.nodeagent.faults import FaultTracker
from gpudra.nodeagent.liveness import Liveness
from gpudra.nodeagent.watch import GpuWatch
from gpudra.nvml.backend import GpuBackend
from gpudra.settings.node import NodeSettings


@dataclass(frozen=True)
class NodeAgent:
    liveness: Liveness
    faults: FaultTracker
    watch: GpuWatch


def node_agent(
    backend: GpuBackend,
    inventory: Inventory,
    settings: NodeSettings,
    *,
    api_unreachable_s: float | None = None,
    lost_effect: TaintEffect = "NoExecute",
) -> NodeAgent:
    """The agent of a daemon on ``backend`` (``inventory``: its first read); the API server's
    limit for a daemon that talks to one, the lost GPU's taint effect for one that taints."""
    liveness = Liveness(nvml_wedged_s=settings.nvml_wedged_s, api_unreachable_s=api_unreachable_s)
    faults = FaultTracker(recovery_s=settings.health_recovery_s, lost_effect=lost_effect)
    watch = GpuWatch(
        backend,
        faults,
        liveness,
        inventory=inventory,
        probe_interval_s=settings.nvml_probe_interval_s,
    )
    return NodeAgent(liveness=liveness, faults=faults, watch=watch)
