"""Settings of ``gpudra device-plugin``, the classic (v1beta1) device plugin: paths, resource
names, MIG strategy, how devices reach containers, the GPUs it serves.

Names follow NVIDIA's k8s-device-plugin where it has one (``migStrategy``,
``deviceListStrategy``, ``deviceIDStrategy``, ``passDeviceSpecs``), so a config ports by
renaming the binary.  A file in NVIDIA's own layout (``version: v1``, ``flags``,
``sharing.timeSlicing``) is read with ``--device-plugin-config``; its ``flags`` fill in what
these settings leave unset (``gpudra.deviceplugin.config``).

The device plugin has no API access: its mock profile comes from ``--profile`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gpudra.settings.backend import BackendSettings
from gpudra.settings.node import NodeSettings

MigStrategy = Literal["none", "single", "mixed"]
DeviceIdStrategy = Literal["uuid", "index"]
ListStrategy = Literal["envvar", "cdi-cri"]
LIST_STRATEGIES: tuple[ListStrategy, ...] = ("envvar", "cdi-cri")
# NVIDIA's strategies gpudra does not implement, with what to use instead
UNSUPPORTED_LIST_STRATEGIES = {
    "volume-mounts": "use envvar or cdi-cri",
    "cdi-annotations": "use cdi-cri (the CRI field the kubelet passes to the runtime)",
}


def list_strategy_problem(values: list[str]) -> str | None:
    """Why a ``deviceListStrategy`` value is refused, or None."""
    if not values:
        return "deviceListStrategy is empty: give envvar, cdi-cri or both"
    for v in values:
        if v in UNSUPPORTED_LIST_STRATEGIES:
            return f"deviceListStrategy {v!r} is not supported: {UNSUPPORTED_LIST_STRATEGIES[v]}"
        if v not in LIST_STRATEGIES:
            return f"deviceListStrategy {v!r} is unknown: allowed are envvar and cdi-cri"
    return None


def _list_strategy(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        raise ValueError(f"expected envvar, cdi-cri or envvar,cdi-cri, got {value!r}")
    problem = list_strategy_problem(items)
    if problem:
        raise ValueError(problem)
    return tuple(dict.fromkeys(items))


ListStrategySetting = Annotated[
    tuple[str, ...],
    NoDecode,
    BeforeValidator(_list_strategy),
    PlainSerializer(",".join, return_type=str),
]


class DevicePluginSettings(BaseSettings, NodeSettings, BackendSettings):
    """``gpudra device-plugin``."""

    model_config = SettingsConfigDict(env_prefix="GPUDRA_", extra="forbid", frozen=True)

    kubelet_dir: Path = Field(
        default=Path("/var/lib/kubelet"),
        description="the kubelet's root dir: sockets in <dir>/device-plugins, GPU ownership "
        "locks (shared with the DRA plugin) in <dir>/gpudra/gpus",
    )
    device_plugin_dir: Path | None = Field(
        default=None,
        description="the kubelet's device-plugin socket dir (default <kubelet-dir>/"
        "device-plugins; the kubelet itself always uses /var/lib/kubelet/device-plugins, "
        "whatever its --root-dir)",
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$",
        description="extended resource of whole GPUs (MIG resources under mixed are "
        "<domain>/mig-<profile>)",
    )
    mig_strategy: MigStrategy | None = Field(
        default=None,
        description="none (whole GPUs), single (identical MIG devices as the GPU resource), "
        "mixed (one resource per MIG profile); unset: the config file's, else none",
    )
    device_list_strategy: ListStrategySetting | None = Field(
        default=None,
        description="how containers get their devices: envvar (NVIDIA_VISIBLE_DEVICES), "
        "cdi-cri (CDI devices in the Allocate response), or both; unset: the config "
        "file's, else envvar,cdi-cri",
    )
    device_id_strategy: DeviceIdStrategy | None = Field(
        default=None,
        description="what NVIDIA_VISIBLE_DEVICES lists: uuid or index; unset: the config "
        "file's, else uuid",
    )
    pass_device_specs: bool | None = Field(
        default=None,
        description="also return the device nodes in the Allocate response (for runtimes "
        "without CDI); unset: the config file's, else off",
    )
    device_plugin_config: Path | None = Field(
        default=None,
        description="a config file in NVIDIA's k8s-device-plugin layout (version: v1, flags, "
        "sharing.timeSlicing) - theirs works unchanged",
    )

    @property
    def device_plugin_path(self) -> Path:
        return self.device_plugin_dir or self.kubelet_dir / "device-plugins"

    @property
    def kubelet_socket(self) -> Path:
        return self.device_plugin_path / "kubelet.sock"

    @property
    def gpu_lock_path(self) -> Path:
        return self.gpu_lock_dir or self.kubelet_dir / "gpudra" / "gpus"

    @property
    def dev_root(self) -> Path | None:
        if self.backend != "mock":
            return None
        return self.fake_dev_root or self.kubelet_dir / "gpudra" / "device-plugin" / "fake-dev"
