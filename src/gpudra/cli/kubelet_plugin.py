"""``gpudra kubelet-plugin``: wire settings, backend and API client into the node daemon."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

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
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.factory import open_backend
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
    try:
        backend = open_backend(
            s.backend,
            node_name=s.node_name,
            profile=choice.profile,
            profile_file=choice.profile_file,
            state_file=s.mock_state_file,
            clique_id=s.clique_id,
        )
    except ProfileError as e:
        raise ProfileError(f"node {s.node_name}: {choice.source}: {e}") from e
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    if s.metrics_port:
        daemon.serve_http(s.metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    try:
        daemon.wait(stop)
    finally:
        daemon.stop()
    return 0
