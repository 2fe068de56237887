"""``gpudra device-plugin``: wire settings, NVIDIA's config file and the backend into the
classic device plugin."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gpudra.cli.node_daemon import node_backend, run_until_signalled
from gpudra.cli.settings_flags import (
    SettingsError,
    add_config_flag,
    add_flags,
    load_settings,
    precedence_note,
)
from gpudra.cli.shared_flags import SHARED_FIELDS, backend_flags
from gpudra.common.logfmt import bind_process
from gpudra.deviceplugin.config import DevicePluginConfig, parse_config
from gpudra.deviceplugin.daemon import DevicePluginDaemon
from gpudra.deviceplugin.options import Options, effective
from gpudra.settings import DevicePluginSettings

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "device-plugin",
        help="run the classic device plugin (kubelet device-plugin API v1beta1, nvidia.com/gpu)",
        description=precedence_note(DevicePluginSettings, "node_name")
        + " Settings left unset take the flags of --device-plugin-config (NVIDIA's layout).",
        parents=[backend_flags()],
    )
    add_config_flag(p)
    add_flags(p, DevicePluginSettings, skip=SHARED_FIELDS)


def nvidia_config(s: DevicePluginSettings) -> DevicePluginConfig | None:
    """The NVIDIA-layout file of ``--device-plugin-config``; SettingsError (unreadable) or
    PluginConfigError (invalid) naming what is wrong."""
    path = s.device_plugin_config
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read the device plugin config: {e}") from e
    return parse_config(text, source=str(path))


def options_from(args: argparse.Namespace) -> tuple[DevicePluginSettings, Options]:
    s = load_settings(DevicePluginSettings, args)
    config = nvidia_config(s)
    if config is not None and config.ignored():
        log.info(
            "%s: accepted but not used by gpudra: %s",
            s.device_plugin_config,
            ", ".join(config.ignored()),
        )
    return s, effective(s, config)


def run(args: argparse.Namespace) -> int:
    s, options = options_from(args)
    bind_process(node=s.node_name)
    backend = node_backend(s, s.node_name, profile=s.profile, profile_file=s.profile_file)
    daemon = DevicePluginDaemon(s, backend=backend, options=options)
    return run_until_signalled(daemon, s.metrics_port)
