"""Settings of ``gpudra controller``, the cluster allocator: pass pacing, leader election.

Like the node daemon's: flags > ``GPUDRA_*`` environment > ``--config`` file > defaults.
``interval_s`` and ``unschedulable_deadline_s`` keep their first flag spellings
(``--interval``, ``--unschedulable-deadline``; the chart renders those) as aliases.
"""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpudra.resourceapi import DRIVER_NAME
from gpudra.settings.cluster import DriverName, KubeconfigSetting


def _pod_namespace() -> str:
    return os.environ.get("POD_NAMESPACE", "kube-system")


class ControllerSettings(BaseSettings, KubeconfigSetting):
    """``gpudra controller``."""

    model_config = SettingsConfigDict(env_prefix="GPUDRA_", extra="forbid", frozen=True)

    driver_name: DriverName = Field(
        default=DRIVER_NAME,
        description="the node daemons' DRA driver name: its pools must be named after their nodes",
    )
    interval_s: float = Field(
        default=1.0,
        gt=0,
        description="most seconds between passes (a pass also starts on every watched "
        "change; passes read the watch-fed cache, not the API server)",
        json_schema_extra={"legacy_flags": ["--interval"]},
    )
    unschedulable_deadline_s: float = Field(
        default=120.0,
        gt=0,
        description="seconds an ungated pod may stay unbound before its claims are released",
        json_schema_extra={"legacy_flags": ["--unschedulable-deadline"]},
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="serve Prometheus /metrics on this port (0: off)"
    )
    leader_elect: bool = Field(
        default=False, description="run under a Lease, so replicas take turns"
    )
    lease_namespace: str = Field(
        default_factory=_pod_namespace,
        min_length=1,
        description="namespace of the leader-election Lease (default $POD_NAMESPACE, else "
        "kube-system)",
    )
    lease_name: str = Field(
        default="gpudra-controller", min_length=1, description="name of the leader-election Lease"
    )
    once: bool = Field(default=False, description="one pass, then exit (for scripts)")
