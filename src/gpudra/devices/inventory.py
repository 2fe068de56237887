"""One node's inventory: its GPUs, the MIG devices that exist on them, and their topology.

This is what a backend returns and what every later decision (ResourceSlices, prepare,
allocation scoring) starts from.  It checks its own consistency on construction so that a
malformed mock profile or a confused backend fails here, with a reason, not downstream.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gpudra.common.model import Model
from gpudra.devices.gpu import Gpu, MigDevice
from gpudra.devices.mig import MigInstance, free_placements, placement_violation
from gpudra.devices.topology import Topology


class Inventory(Model):
    node_name: str
    driver_version: str
    cuda_driver_version: str
    gpus: tuple[Gpu, ...]
    mig_devices: tuple[MigDevice, ...] = ()
    topology: Topology = Field(default_factory=lambda: Topology(gpu_count=0))

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        if [g.index for g in self.gpus] != list(range(len(self.gpus))):
            raise ValueError("GPU indices must be 0..n-1 in order")
        if len({g.uuid for g in self.gpus}) != len(self.gpus):
            raise ValueError("GPU UUIDs must be unique")
        if self.topology.gpu_count != len(self.gpus):
            raise ValueError(
                f"topology describes {self.topology.gpu_count} GPUs, inventory has {len(self.gpus)}"
            )
        by_uuid = {g.uuid: g for g in self.gpus}
        for mig in self.mig_devices:
            if mig.parent_uuid not in by_uuid:
                raise ValueError(f"MIG device {mig.uuid} has unknown parent {mig.parent_uuid}")
        return self

    def gpu(self, uuid: str) -> Gpu | None:
        return next((g for g in self.gpus if g.uuid == uuid), None)

    def migs_on(self, gpu: Gpu) -> list[MigDevice]:
        return [m for m in self.mig_devices if m.parent_uuid == gpu.uuid]

    def mig_instances_on(self, gpu: Gpu) -> list[MigInstance]:
        """Existing MIG devices of ``gpu`` as profile+placement (unknown profiles skipped)."""
        family = gpu.mig_profiles()
        if family is None:
            return []
        out = []
        for m in self.migs_on(gpu):
            prof = family.profile(m.profile)
            if prof is not None:
                out.append(MigInstance(profile=prof, placement=m.placement))
        return out

    def free_mig_placements(self, gpu: Gpu) -> dict[str, list[str]]:
        """Profile name -> placements (``start:size``) still creatable on ``gpu``."""
        family = gpu.mig_profiles()
        if family is None:
            return {}
        free = free_placements(family, self.mig_instances_on(gpu))
        return {name: [str(p) for p in pls] for name, pls in free.items()}

    def mig_violation(self, gpu: Gpu, profile_name: str, start: int) -> str | None:
        """Why a MIG device of ``profile_name`` cannot be created at ``start`` on ``gpu``."""
        family = gpu.mig_profiles()
        if family is None or not gpu.mig_capable:
            return f"GPU {gpu.index} ({gpu.product_name}) does not support MIG"
        prof = family.profile(profile_name)
        if prof is None:
            names = ", ".join(family.profile_names())
            return (
                f"GPU {gpu.index} ({family.name}) has no MIG profile {profile_name!r}; "
                f"known: {names}"
            )
        return placement_violation(self.mig_instances_on(gpu), prof, start)
