"""A device-plugin config file in NVIDIA's k8s-device-plugin layout, read strictly (pure).

The layout (``api/config/v1`` of NVIDIA/k8s-device-plugin)::

    version: v1
    flags:
      migStrategy: none | single | mixed
      failOnInitError: true
      plugin: {passDeviceSpecs: false, deviceListStrategy: [envvar], deviceIDStrategy: uuid}
    sharing:
      timeSlicing:
        renameByDefault: false
        failRequestsGreaterThanOne: false
        resources:
        - name: nvidia.com/gpu
          replicas: 4
          rename: nvidia.com/gpu.shared     # optional
          devices: all | <count> | [0, "GPU-...", "1:0"]   # optional, default all

A file written for NVIDIA's plugin is accepted unchanged: keys that only matter to NVIDIA's
binaries (``nvidiaDriverRoot``, ``gfd``, ``nvidiaCTKPath``, ...) are accepted and reported as
ignored.  What gpudra cannot honour is refused with the key's path and what is allowed
(``sharing.mps``, the ``resources`` renaming patterns, unknown keys, bad values), never
silently dropped.  NVIDIA's own messages are kept where it has one.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpudra.common.errors import GpudraError
from gpudra.settings.device_plugin import DeviceIdStrategy, MigStrategy, list_strategy_problem

# keys of NVIDIA's flags that have no meaning for gpudra (paths of NVIDIA's own tools, GFD)
IGNORED_FLAGS = (
    "nvidiaDriverRoot",
    "gdsEnabled",
    "mofedEnabled",
    "restartOnDeviceUnhealthy",
    "failOnInitError",
    "gfd",
)
IGNORED_PLUGIN_FLAGS = ("cdiAnnotationPrefix", "nvidiaCTKPath", "containerDriverRoot")


class PluginConfigError(GpudraError, ValueError):
    """The config file is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PluginFlags(_Strict):
    pass_device_specs: bool | None = Field(default=None, alias="passDeviceSpecs")
    device_list_strategy: tuple[str, ...] | None = Field(default=None, alias="deviceListStrategy")
    device_id_strategy: DeviceIdStrategy | None = Field(default=None, alias="deviceIDStrategy")
    cdi_annotation_prefix: str | None = Field(default=None, alias="cdiAnnotationPrefix")
    nvidia_ctk_path: str | None = Field(default=None, alias="nvidiaCTKPath")
    container_driver_root: str | None = Field(default=None, alias="containerDriverRoot")

    @field_validator("device_list_strategy", mode="before")
    @classmethod
    def _strategies(cls, v: Any) -> Any:
        if v is None:
            return v
        items = [v] if isinstance(v, str) else list(v)
        problem = list_strategy_problem([str(i) for i in items])
        if problem:
            raise ValueError(problem)
        return tuple(str(i) for i in items)


class Flags(_Strict):
    mig_strategy: MigStrategy | None = Field(default=None, alias="migStrategy")
    fail_on_init_error: bool | None = Field(default=None, alias="failOnInitError")
    restart_on_device_unhealthy: bool | None = Field(default=None, alias="restartOnDeviceUnhealthy")
    nvidia_driver_root: str | None = Field(default=None, alias="nvidiaDriverRoot")
    gds_enabled: bool | None = Field(default=None, alias="gdsEnabled")
    mofed_enabled: bool | None = Field(default=None, alias="mofedEnabled")
    plugin: PluginFlags | None = None
    gfd: dict[str, Any] | None = None


DeviceRef = int | str


class ReplicaResource(_Strict):
    name: str = Field(min_length=1)
    rename: str | None = None
    devices: Literal["all"] | int | tuple[DeviceRef, ...] = "all"
    replicas: int

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"replicas must be at least 1, got {v}")
        return v

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "all":
            raise ValueError(f"devices set as {v!r} but the only valid string input is 'all'")
        if isinstance(v, bool):
            raise ValueError(f"devices: expected 'all', a count or a list, got {v!r}")
        if isinstance(v, int) and v <= 0:
            raise ValueError(f"devices set as {v} but a count of devices must be > 0")
        if isinstance(v, list):
            for item in v:
                if isinstance(item, bool) or not isinstance(item, int | str):
                    raise ValueError(
                        f"devices: {item!r} is not a GPU index, a MIG index (GPU:MIG) or a UUID"
                    )
            return tuple(v)
        return v


class TimeSlicing(_Strict):
    rename_by_default: bool = Field(default=False, alias="renameByDefault")
    fail_requests_greater_than_one: bool = Field(default=False, alias="failRequestsGreaterThanOne")
    resources: tuple[ReplicaResource, ...]

    @field_validator("resources")
    @classmethod
    def _unique(cls, v: tuple[ReplicaResource, ...]) -> tuple[ReplicaResource, ...]:
        if not v:
            raise ValueError("no resources specified")
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup and any(r.devices == "all" for r in v if r.name in dup):
            raise ValueError(f"resource {dup[0]!r} is listed twice with devices: all")
        return v


class Sharing(_Strict):
    time_slicing: TimeSlicing | None = Field(default=None, alias="timeSlicing")
    mps: dict[str, Any] | None = None

    @field_validator("mps")
    @classmethod
    def _no_mps(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v:
            raise ValueError(
                "MPS sharing is not supported by gpudra's device plugin; use "
                "sharing.timeSlicing here, or MPS through the DRA driver's claim config"
            )
        return v


class DevicePluginConfig(_Strict):
    version: Literal["v1"]
    flags: Flags = Flags()
    sharing: Sharing = Sharing()
    resources: dict[str, Any] | None = None

    @field_validator("resources")
    @classmethod
    def _no_patterns(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v:
            raise ValueError(
                "resource renaming patterns (resources.gpus / resources.mig) are not "
                "supported; set resourceName, or rename in sharing.timeSlicing.resources"
            )
        return v

    @property
    def time_slicing(self) -> TimeSlicing | None:
        return self.sharing.time_slicing

    def ignored(self) -> list[str]:
        """The keys given that gpudra accepts but does not use (for a log line)."""
        out = [f"flags.{k}" for k in IGNORED_FLAGS if self.flags.model_dump(by_alias=True)[k]]
        plugin = self.flags.plugin
        if plugin is not None:
            given = plugin.model_dump(by_alias=True)
            out += [f"flags.plugin.{k}" for k in IGNORED_PLUGIN_FLAGS if given[k] is not None]
        return out


def _describe(err: ValidationError) -> str:
    out = []
    for e in err.errors():
        ctx = e.get("ctx") or {}
        msg = str(ctx["error"]) if e["type"] == "value_error" and "error" in ctx else e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "literal_error" and e["loc"] == ("version",):
            msg = f"unsupported version {e.get('input')!r}; this layout is version: v1"
        loc = [str(x) for x in e["loc"] if not str(x).startswith(("function-", "tagged-"))]
        # union members appear as extra loc parts (int, str, tuple[...]): drop them
        loc = [x for x in loc if x not in ("int", "str", "literal['all']") and "[" not in x]
        out.append(f"{'.'.join(loc) or '(top level)'}: {msg}")
    return "; ".join(dict.fromkeys(out))


def parse_config(text: str, *, source: str) -> DevicePluginConfig:
    """The config in ``text`` (YAML or JSON); PluginConfigError naming ``source`` and each
    bad key."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PluginConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise PluginConfigError(
            f"{source}: expected a mapping with version: v1, got {type(raw).__name__}"
        )
    if "version" not in raw:
        raise PluginConfigError(f"{source}: missing version (this layout is version: v1)")
    try:
        return DevicePluginConfig.model_validate(raw)
    except ValidationError as e:
        raise PluginConfigError(f"{source}: {_describe(e)}") from e
