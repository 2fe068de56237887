"""``gpudra kubelet-plugin``: wire settings, backend and API client into the node daemon."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gpudra.cli.node_daemon import node_backend, run_until_signalled
from gpudra.cli.settings_flags import (
    add_config_flag,
    add_flags,
    load_settings,
    precedence_note,
)
from gpudra.cli.shared_flags import SHARED_FIELDS, api_client, backend_flags, kubeconfig_flags
from gpudra.common.logfmt import bind_process
from gpudra.kube.client import KubeClient
from gpudra.kube.resources import NODES
from gpudra.kubeletplugin.daemon import KubeletPluginDaemon
from gpudra.kubeletplugin.profile_choice import choose_profile
from gpudra.settings import KubeletPluginSettings

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "kubelet-plugin",
        help="run the DRA node daemon (kubelet plugin)",
        description=precedence_note(KubeletPluginSettings, "node_name"),
        parents=[kubeconfig_flags(), backend_flags()],
    )
    add_config_flag(p)
    add_flags(p, KubeletPluginSettings, skip=SHARED_FIELDS)


def settings_from(args: argparse.Namespace) -> KubeletPluginSettings:
    """The daemon's settings: flags > GPUDRA_* environment > ``--config`` file > defaults."""
    return load_settings(KubeletPluginSettings, args)


def run(args: argparse.Namespace) -> int:
    s = settings_from(args)
    bind_process(node=s.node_name)
    client = api_client(s)
    try:
        return _serve(s, client)
    finally:
        client.close()


def _node_labels(s: KubeletPluginSettings, client: KubeClient) -> dict[str, str]:
    if s.backend != "mock" or not s.profile_node_label:
        return {}
    node = client.get(NODES, s.node_name)
    return dict((node.get("metadata") or {}).get("labels") or {})


def _serve(s: KubeletPluginSettings, client: KubeClient) -> int:
    choice = choose_profile(s, _node_labels(s, client))
    log.info("GPU backend: %s (%s)", s.backend, choice.source)
    backend = node_backend(
        s,
        s.node_name,
        profile=choice.profile,
        profile_file=choice.profile_file,
        source=choice.source,
    )
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    return run_until_signalled(daemon, s.metrics_port)
