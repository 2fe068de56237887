"""Mock machine profiles: the schema of a machine profile file and how one is found and loaded.

A machine profile describes one whole node model (GPU product, count, NUMA/PCIe layout,
NVLink wiring, NVLink fabric ids), e.g. a DGX H100; it is not a MIG profile
(``gpudra.devices.mig.MigProfile``, a slice of one GPU).  The shipped ones live in
``profiles/*.yaml`` and are chosen with ``--profile``; users pass their own with
``--profile-file`` (the user-facing names say "profile").  A malformed file is refused with
the file, the field and what is allowed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gpudra.common.model import Model
from gpudra.devices.gpu import MigMode
from gpudra.devices.mig import families
from gpudra.devices.topology import PcieLevel
from gpudra.nvml.errors import ProfileError


class GpuSpec(Model):
    """What every GPU of the machine reports."""

    product_name: str
    brand: str
    architecture: str
    cuda_compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    memory_mib: int = Field(alias="memoryMiB", gt=0)
    multiprocessors: int = Field(gt=0)
    mig_family: str | None = None
    mig_mode: MigMode = MigMode.UNSUPPORTED

    @field_validator("mig_family")
    @classmethod
    def _known_family(cls, v: str | None) -> str | None:
        if v is not None and v not in families():
            raise ValueError(f"unknown MIG family {v!r}; allowed: {', '.join(sorted(families()))}")
        return v

    @model_validator(mode="after")
    def _mode_needs_family(self) -> GpuSpec:
        if self.mig_mode is not MigMode.UNSUPPORTED and self.mig_family is None:
            raise ValueError("migMode enabled/disabled needs migFamily (the GPU must support MIG)")
        if self.mig_mode is MigMode.UNSUPPORTED and self.mig_family is not None:
            raise ValueError("a GPU with migFamily must set migMode to enabled or disabled")
        return self


class NvSwitchSpec(Model):
    links_per_gpu: int = Field(ge=1, le=18)


class NvLinkSpec(Model):
    bandwidth_per_link_gbps: float = Field(alias="bandwidthPerLinkGBps", gt=0)
    nvswitch: NvSwitchSpec | None = None
    pairs: tuple[tuple[int, int, int], ...] = Field(
        default=(), description="[gpuA, gpuB, linkCount] for direct links"
    )


class FabricSpec(Model):
    clique_id: str
    cluster_uuid: str


class MachineProfile(Model):
    """A node model the mock backend can impersonate."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    driver_version: str
    cuda_driver_version: str = Field(pattern=r"^\d+\.\d+$")
    gpu_count: int = Field(ge=1, le=64)
    gpu: GpuSpec
    numa_nodes: tuple[int, ...]
    pcie_switches: tuple[int, ...]
    same_switch_level: PcieLevel = PcieLevel.PIX
    same_numa_level: PcieLevel = PcieLevel.NODE
    pci_bus_ids: tuple[str, ...] | None = None
    mig_modes: tuple[MigMode, ...] | None = Field(
        default=None, description="per-GPU override of gpu.migMode"
    )
    nvlink: NvLinkSpec | None = None
    fabric: FabricSpec | None = None

    @model_validator(mode="after")
    def _shapes(self) -> MachineProfile:
        n = self.gpu_count
        for field, value in (
            ("numaNodes", self.numa_nodes),
            ("pcieSwitches", self.pcie_switches),
            ("pciBusIds", self.pci_bus_ids),
            ("migModes", self.mig_modes),
        ):
            if value is not None and len(value) != n:
                raise ValueError(f"{field} has {len(value)} entries; gpuCount is {n}")
        needs_family = any(m is not MigMode.UNSUPPORTED for m in self.mig_modes or ())
        if needs_family and self.gpu.mig_family is None:
            raise ValueError("migModes needs gpu.migFamily")
        for a, b, links in self.nvlink.pairs if self.nvlink else ():
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"nvlink pair [{a}, {b}] must name two different GPUs 0..{n - 1}")
            if not 1 <= links <= 18:
                raise ValueError(f"nvlink pair [{a}, {b}] has {links} links; allowed: 1..18")
        return self

    def mig_mode_of(self, index: int) -> MigMode:
        return self.mig_modes[index] if self.mig_modes else self.gpu.mig_mode


def available_machines() -> list[str]:
    """Names of the shipped machine profiles (``--profile`` values), sorted."""
    root = resources.files("gpudra.nvml.mock").joinpath("profiles")
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_machine(name: str) -> MachineProfile:
    """A shipped machine profile by name; unknown names list the available ones."""
    if name not in available_machines():
        raise ProfileError(
            f"unknown mock profile {name!r}; available: {', '.join(available_machines())}"
        )
    text = resources.files("gpudra.nvml.mock").joinpath(f"profiles/{name}.yaml").read_text()
    return parse_machine(text, source=f"<built-in profile {name}>")


def load_machine_file(path: Path) -> MachineProfile:
    """A machine profile from a user's YAML file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ProfileError(f"{path}: cannot read profile file: {e.strerror}") from e
    return parse_machine(text, source=str(path))


def parse_machine(text: str, *, source: str) -> MachineProfile:
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: a profile must be a YAML mapping, got {type(raw).__name__}")
    try:
        return MachineProfile.model_validate(raw)
    except ValidationError as e:
        raise ProfileError(f"{source}: invalid profile:\n{_describe(e)}") from e


def _describe(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; fields are camelCase)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)
