"""MIG geometry: profiles, placements and the rules that decide which instances can coexist.

The tables are data (``data/mig-profiles.yaml``); this module only decides.  A placement is
``start:size`` in memory-slice units, as NVML reports it.  Two instances on one GPU may
coexist when their memory-slice ranges do not overlap, each profile stays within its
``maxInstances``, and the compute slices in use do not exceed the GPU's seven.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

MEMORY_SLICES = 8
SM_SLICES = 7


class MigProfile(BaseModel):
    """One GPU-instance profile of a GPU family (with its full-size compute instance)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    id: int = Field(ge=0, description="GPU-instance profile id as NVML reports it")
    nvml_profile: int = Field(alias="nvmlProfile", ge=0)
    ci_profile: int = Field(alias="ciProfile", ge=0)
    sm_slices: int = Field(alias="smSlices", ge=1, le=SM_SLICES)
    memory_slices: int = Field(alias="memorySlices", ge=1, le=MEMORY_SLICES)
    max_instances: int = Field(alias="maxInstances", ge=1, le=SM_SLICES)
    starts: tuple[int, ...]
    memory_mib: int = Field(alias="memoryMiB", gt=0)
    multiprocessors: int = Field(gt=0)
    copy_engines: int = Field(alias="copyEngines", ge=0)
    decoders: int = Field(ge=0)
    encoders: int = Field(ge=0)
    jpeg_engines: int = Field(alias="jpegEngines", ge=0)
    ofa_engines: int = Field(alias="ofaEngines", ge=0)

    def placements(self) -> tuple[Placement, ...]:
        return tuple(Placement(start=s, size=self.memory_slices) for s in self.starts)


class MigFamily(BaseModel):
    """The MIG profiles of one GPU product family, e.g. ``H100-80GB``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    match: tuple[str, ...]
    profiles: tuple[MigProfile, ...]

    def profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def profile_names(self) -> list[str]:
        return [p.name for p in self.profiles]


@dataclass(frozen=True, order=True)
class Placement:
    """A GPU-instance placement: memory slices ``start`` .. ``start + size - 1``."""

    start: int
    size: int

    @property
    def slices(self) -> range:
        return range(self.start, self.start + self.size)

    def overlaps(self, other: Placement) -> bool:
        return self.start < other.start + other.size and other.start < self.start + self.size

    def __str__(self) -> str:
        return f"{self.start}:{self.size}"


@dataclass(frozen=True)
class MigInstance:
    """An instance that exists (or would exist) on a GPU: which profile, where."""

    profile: MigProfile
    placement: Placement


@cache
def families() -> dict[str, MigFamily]:
    """All known MIG families, keyed by family name."""
    text = resources.files("gpudra.devices").joinpath("data/mig-profiles.yaml").read_text()
    raw = yaml.safe_load(text)["families"]
    return {name: MigFamily(name=name, **body) for name, body in raw.items()}


def family_named(name: str) -> MigFamily:
    try:
        return families()[name]
    except KeyError:
        known = ", ".join(sorted(families()))
        raise KeyError(f"unknown MIG family {name!r}; known families: {known}") from None


def family_for_product(product_name: str) -> MigFamily | None:
    """The MIG family whose match strings occur in an NVML product name, if any."""
    for family in families().values():
        if any(m.lower() in product_name.lower() for m in family.match):
            return family
    return None


def placement_violation(
    existing: Sequence[MigInstance], profile: MigProfile, start: int
) -> str | None:
    """Why ``profile`` cannot be placed at ``start`` next to ``existing``; None if it can."""
    if start not in profile.starts:
        allowed = ", ".join(str(s) for s in profile.starts)
        return (
            f"profile {profile.name} cannot start at memory slice {start}; "
            f"allowed starts: {allowed}"
        )
    new = Placement(start=start, size=profile.memory_slices)
    for inst in existing:
        if inst.placement.overlaps(new):
            return (
                f"placement {new} of {profile.name} overlaps {inst.profile.name} "
                f"at {inst.placement}"
            )
    same = sum(1 for i in existing if i.profile.name == profile.name)
    if same >= profile.max_instances:
        return f"profile {profile.name} allows at most {profile.max_instances} instance(s) per GPU"
    used = sum(i.profile.sm_slices for i in existing)
    if used + profile.sm_slices > SM_SLICES:
        return (
            f"{profile.name} needs {profile.sm_slices} compute slice(s) but only "
            f"{SM_SLICES - used} of {SM_SLICES} are free"
        )
    return None


def layout_is_valid(instances: Iterable[MigInstance]) -> bool:
    """True when every instance could be created in order next to the ones before it."""
    placed: list[MigInstance] = []
    for inst in instances:
        if placement_violation(placed, inst.profile, inst.placement.start) is not None:
            return False
        placed.append(inst)
    return True


def free_placements(
    family: MigFamily, existing: Sequence[MigInstance]
) -> dict[str, tuple[Placement, ...]]:
    """For each profile, the placements that could still be created next to ``existing``."""
    return {
        p.name: tuple(
            pl for pl in p.placements() if placement_violation(existing, p, pl.start) is None
        )
        for p in family.profiles
    }
