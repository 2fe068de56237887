"""What gpudra knows about one physical GPU and one MIG device: the pure device model.

Every field is something a backend (real NVML or the mock) can report; nothing here talks
to hardware.  Names follow the NVIDIA reference DRA driver where it has a name for the fact.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from gpudra.common.model import Model
from gpudra.devices.mig import MigFamily, Placement, family_named
from gpudra.devices.timeslice import Interval


class MigMode(StrEnum):
    """MIG mode as NVML reports it; ``unsupported`` for GPUs without MIG."""

    UNSUPPORTED = "unsupported"
    DISABLED = "disabled"
    ENABLED = "enabled"


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    LOST = "lost"


class Gpu(Model):
    """One physical GPU on a node."""

    index: int = Field(ge=0)
    minor: int = Field(ge=0)
    uuid: str
    product_name: str
    brand: str
    architecture: str
    cuda_compute_capability: str
    pci_bus_id: str
    pcie_root: str | None = None
    numa_node: int | None = None
    memory_bytes: int = Field(gt=0)
    multiprocessors: int | None = Field(default=None, ge=1)
    mig_mode: MigMode = MigMode.UNSUPPORTED
    mig_family: str | None = Field(
        default=None, description="MIG profile family (devices/data/mig-profiles.yaml)"
    )
    health: Health = Health.HEALTHY
    # the CUDA time slice the GPU is set to now; None where the backend cannot read it (the
    # real one: nvidia-smi is too slow to ask on every inventory read).  Never published: it
    # changes with the claims prepared, not with what the GPU is
    time_slice: Interval | None = None

    @property
    def mig_capable(self) -> bool:
        return self.mig_mode is not MigMode.UNSUPPORTED and self.mig_family is not None

    def mig_profiles(self) -> MigFamily | None:
        return family_named(self.mig_family) if self.mig_family else None


class MigDevice(Model):
    """An existing MIG device: a GPU instance with its full-size compute instance."""

    uuid: str
    parent_uuid: str
    parent_index: int = Field(ge=0)
    profile: str
    gpu_instance_id: int = Field(ge=0)
    compute_instance_id: int = Field(ge=0)
    placement_start: int = Field(ge=0)
    placement_size: int = Field(ge=1)
    # minors of /dev/nvidia-caps/nvidia-cap<N> granting access to the GPU and compute
    # instance (real hardware; empty in the mock)
    capability_minors: tuple[int, ...] = ()

    @property
    def capability_nodes(self) -> tuple[str, ...]:
        return tuple(f"/dev/nvidia-caps/nvidia-cap{n}" for n in self.capability_minors)

    @property
    def placement(self) -> Placement:
        return Placement(start=self.placement_start, size=self.placement_size)
