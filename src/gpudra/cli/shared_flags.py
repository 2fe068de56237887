"""Flags several subcommands take, declared once: ``--kubeconfig`` and the GPU backend group.

Each is an argparse parent parser built from the settings fields that declare it
(``KubeconfigSetting``, ``BackendSettings``), so ``discover``, ``explain``, ``kubelet-plugin``
and ``controller`` spell, type and document them identically.
"""

from __future__ import annotations

import argparse

from gpudra.cli.settings_flags import add_flags
from gpudra.kube.client import KubeClient
from gpudra.nvml.mock import available_machines
from gpudra.settings import BackendSettings, KubeconfigSetting

SHARED_FIELDS = frozenset(KubeconfigSetting.model_fields) | frozenset(BackendSettings.model_fields)
"""Fields the parent parsers declare; a subcommand adding its own model's flags skips these."""


def kubeconfig_flags() -> argparse.ArgumentParser:
    """``--kubeconfig``, for ``parents=[...]``."""
    p = argparse.ArgumentParser(add_help=False)
    add_flags(p, KubeconfigSetting)
    return p


def backend_flags() -> argparse.ArgumentParser:
    """``--backend``, ``--profile``, ``--profile-file``, ``--mock-state-file``, ``--clique-id``."""
    p = argparse.ArgumentParser(add_help=False)
    shipped = ", ".join(available_machines())
    add_flags(p, BackendSettings, extra_help={"profile": f"one of: {shipped}"})
    return p


def api_client(settings: KubeconfigSetting) -> KubeClient:
    """The API client the ``kubeconfig`` setting asks for: that file, or (none given) the
    in-cluster service account."""
    if settings.kubeconfig:
        return KubeClient.from_kubeconfig(settings.kubeconfig)
    return KubeClient.in_cluster()
