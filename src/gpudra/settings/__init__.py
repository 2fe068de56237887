"""Typed settings of each gpudra binary: one pydantic model per daemon, the source of its flags.

Each field is a setting with one name everywhere: the field ``gc_interval_s`` is the flag
``--gc-interval-s`` (``gpudra.cli.settings_flags`` derives flags, types and help from the
fields), the variable ``GPUDRA_GC_INTERVAL_S`` and the config-file key ``gcIntervalS``.
Precedence: flags > ``GPUDRA_*`` environment > ``--config`` file > defaults.

Strict: unknown keys are refused, and every message names the setting and what is allowed.
"""

from gpudra.settings.backend import (
    MOCK_NEEDS_ONE_MACHINE,
    BackendName,
    BackendSettings,
    mock_machine_problem,
)
from gpudra.settings.cluster import DriverName, KubeconfigSetting
from gpudra.settings.controller import ControllerSettings
from gpudra.settings.device_plugin import DevicePluginSettings
from gpudra.settings.kubelet_plugin import KubeletPluginSettings

__all__ = [
    "MOCK_NEEDS_ONE_MACHINE",
    "BackendName",
    "BackendSettings",
    "ControllerSettings",
    "DevicePluginSettings",
    "DriverName",
    "KubeconfigSetting",
    "KubeletPluginSettings",
    "mock_machine_problem",
]
