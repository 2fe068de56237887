"""``gpudra kubelet-plugin``: wire settings, backend and API client into the node daemon."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from pydantic import ValidationError

from gpudra.kube.client import KubeClient
from gpudra.kube.resources import NODES
from gpudra.kubeletplugin.daemon import KubeletPluginDaemon
from gpudra.kubeletplugin.dirlock import DirLocked
from gpudra.kubeletplugin.profile_choice import choose_profile
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.factory import BackendKind, open_backend
from gpudra.resourceapi import parse_gpu_set
from gpudra.settings import KubeletPluginSettings

log = logging.getLogger(__name__)

FLAGS = {
    "driver_name": ("--driver-name", str, "DRA driver name (default gpu.gpudra.io)"),
    "node_name": ("--node-name", str, "this node's name (default: $GPUDRA_NODE_NAME)"),
    "kubeconfig": ("--kubeconfig", Path, "kubeconfig file (default: in-cluster config)"),
    "plugin_dir": (
        "--plugin-dir",
        Path,
        "DRA socket + checkpoint dir (default /var/lib/kubelet/plugins/<driver>)",
    ),
    "registry_dir": (
        "--registry-dir",
        Path,
        "kubelet plugin registry dir (default /var/lib/kubelet/plugins_registry)",
    ),
    "cdi_dir": ("--cdi-dir", Path, "CDI spec dir (default /var/run/cdi)"),
    "backend": ("--backend", str, "nvml (default) or mock"),
    "profile": ("--profile", str, "mock profile name"),
    "profile_file": ("--profile-file", Path, "mock profile file"),
    "profile_node_label": (
        "--profile-node-label",
        str,
        "mock: take this node's profile from its label of this key (--profile is the default)",
    ),
    "mock_state_file": ("--mock-state-file", Path, "mock node state file (MIG, faults)"),
    "clique_id": ("--clique-id", str, "mock NVLink clique id override"),
    "fake_dev_root": ("--fake-dev-root", Path, "mock: host dir with stand-in /dev/nvidia* files"),
    "controller_managed_gpus": (
        "--controller-managed-gpus",
        str,
        "GPUs only the gpudra controller allocates: all, none, 4-7",
    ),
    "metrics_port": (
        "--metrics-port",
        int,
        "serve Prometheus /metrics, /healthz and /readyz on this port (0: off)",
    ),
    "boot_id_file": (
        "--boot-id-file",
        Path,
        "the node's boot id (default /proc/sys/kernel/random/boot_id): a change since the "
        "checkpoint means a reboot, and every claim is prepared again",
    ),
    "gc_interval_s": (
        "--gc-interval-s",
        float,
        "release checkpointed claims whose ResourceClaim is gone this often (default 60)",
    ),
    "api_unreachable_s": (
        "--api-unreachable-s",
        float,
        "/healthz fails when the API server has not answered for this long (default 300)",
    ),
    "nvml_wedged_s": (
        "--nvml-wedged-s",
        float,
        "/healthz fails when NVML has not completed a call for this long (default 60)",
    ),
    "nvml_probe_interval_s": (
        "--nvml-probe-interval-s",
        float,
        "how often the NVML probe reads the inventory (default 10)",
    ),
    "dynamic_mig_gpus": (
        "--dynamic-mig-gpus",
        str,
        "MIG-capable GPUs published as dynamic MIG placements (created at prepare): all, 0-3",
    ),
}


class SettingsError(Exception):
    """Invalid flags/environment; the message names each bad setting."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("kubelet-plugin", help="run the DRA node daemon (kubelet plugin)")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with any of these settings (per-node GPU modes, paths); "
        "flags and GPUDRA_* variables override it",
    )
    for dest, (flag, typ, help_) in FLAGS.items():
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    p.add_argument(
        "--remove-unknown-mig",
        dest="remove_unknown_mig",
        action="store_const",
        const=True,
        default=None,
        help="destroy MIG instances on dynamic-MIG GPUs that no claim holds",
    )


def _config_file(path: Path) -> dict[str, Any]:
    """Settings from a YAML file: keys in snake_case, camelCase or kebab-case."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: cannot read the config file: {e}") from e
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the config file must be a mapping of settings")
    allowed = set(KubeletPluginSettings.model_fields)
    out = {}
    for key, value in raw.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", str(key)).replace("-", "_").lower()
        if name not in allowed:
            raise SettingsError(
                f"{path}: unknown setting {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
        if f"GPUDRA_{name.upper()}" not in os.environ:  # the environment wins over the file
            out[name] = value
    return out


def settings_from(args: argparse.Namespace) -> KubeletPluginSettings:
    from_file = _config_file(args.config) if getattr(args, "config", None) else {}
    given = from_file | {
        k: getattr(args, k)
        for k in [*FLAGS, "remove_unknown_mig"]
        if getattr(args, k, None) is not None
    }
    try:
        return KubeletPluginSettings(**given)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from e


def run(args: argparse.Namespace) -> int:
    s = settings_from(args)
    client = KubeClient.from_kubeconfig(s.kubeconfig) if s.kubeconfig else KubeClient.in_cluster()
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
            BackendKind(s.backend),
            node_name=s.node_name,
            profile=choice.profile,
            profile_file=choice.profile_file,
            state_file=s.mock_state_file,
            clique_id=s.clique_id,
        )
    except ProfileError as e:
        raise ProfileError(f"node {s.node_name}: {choice.source}: {e}") from e
    count = len(backend.inventory().gpus)
    for field in ("controller_managed_gpus", "dynamic_mig_gpus"):
        try:
            parse_gpu_set(getattr(s, field), count)
        except ValueError as e:
            raise SettingsError(f"invalid settings: {field}: {e}") from e
    try:
        daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    except DirLocked as e:
        raise SettingsError(str(e)) from e
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
