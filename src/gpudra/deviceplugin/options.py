"""The device plugin's effective options: its settings, then NVIDIA's config file, then defaults.

A setting given to ``gpudra device-plugin`` (flag, ``GPUDRA_*`` variable, ``--config`` key)
wins; a setting left unset takes the ``flags`` of the NVIDIA-layout file
(``--device-plugin-config``); what neither gives takes gpudra's default.  gpudra's defaults
differ from NVIDIA's in one place: ``deviceListStrategy`` is ``envvar,cdi-cri`` (the device
nodes come through CDI, so no NVIDIA container runtime is needed).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudra.deviceplugin.config import DevicePluginConfig, TimeSlicing
from gpudra.settings.device_plugin import DeviceIdStrategy, DevicePluginSettings, MigStrategy

DEFAULT_LIST_STRATEGY = ("envvar", "cdi-cri")


@dataclass(frozen=True)
class Options:
    resource_name: str
    mig_strategy: MigStrategy
    list_strategy: tuple[str, ...]
    id_strategy: DeviceIdStrategy
    pass_device_specs: bool
    time_slicing: TimeSlicing | None = None

    @property
    def fail_requests_greater_than_one(self) -> bool:
        return bool(self.time_slicing and self.time_slicing.fail_requests_greater_than_one)

    def describe(self) -> str:
        shared = (
            ", ".join(f"{r.name} x{r.replicas}" for r in self.time_slicing.resources)
            if self.time_slicing
            else "none"
        )
        return (
            f"resource {self.resource_name}, migStrategy {self.mig_strategy}, "
            f"deviceListStrategy {','.join(self.list_strategy)}, deviceIDStrategy "
            f"{self.id_strategy}, passDeviceSpecs {str(self.pass_device_specs).lower()}, "
            f"time-slicing {shared}"
        )


def effective(s: DevicePluginSettings, config: DevicePluginConfig | None) -> Options:
    flags = config.flags if config else None
    plugin = flags.plugin if flags else None
    return Options(
        resource_name=s.resource_name,
        mig_strategy=s.mig_strategy or (flags.mig_strategy if flags else None) or "none",
        list_strategy=s.device_list_strategy
        or (plugin.device_list_strategy if plugin else None)
        or DEFAULT_LIST_STRATEGY,
        id_strategy=s.device_id_strategy
        or (plugin.device_id_strategy if plugin else None)
        or "uuid",
        pass_device_specs=s.pass_device_specs
        if s.pass_device_specs is not None
        else bool(plugin and plugin.pass_device_specs),
        time_slicing=config.time_slicing if config else None,
    )
