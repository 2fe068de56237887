"""Typed settings of each gpudra binary (pydantic-settings: flags > GPUDRA_* env > defaults).

Strict: unknown keys are refused, and every message names the setting and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpudra.resourceapi import DRIVER_NAME, parse_gpu_set

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class KubeletPluginSettings(BaseSettings):
    """``gpudra kubelet-plugin``."""

    model_config = SettingsConfigDict(env_prefix="GPUDRA_", extra="forbid", frozen=True)

    driver_name: str = DRIVER_NAME
    node_name: str = Field(min_length=1)
    kubeconfig: Path | None = None
    plugin_dir: Path | None = None  # default /var/lib/kubelet/plugins/<driver>
    registry_dir: Path = Path("/var/lib/kubelet/plugins_registry")
    cdi_dir: Path = Path("/var/run/cdi")
    backend: str = "nvml"
    profile: str | None = None
    profile_file: Path | None = None
    profile_node_label: str | None = None  # mock: a node label naming this node's profile
    mock_state_file: Path | None = None
    clique_id: str | None = None
    fake_dev_root: Path | None = None  # mock only; default <plugin-dir>/fake-dev
    controller_managed_gpus: str | None = None  # all | none | 4-7 | 0,2 (GPU indices)
    dynamic_mig_gpus: str | None = None  # MIG-capable GPUs published as MIG placements
    remove_unknown_mig: bool = False  # destroy MIG instances on dynamic GPUs no claim holds
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no /metrics endpoint
    # changes at every boot; a change means the CDI specs (tmpfs) and MIG instances are gone
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    # checkpointed claims whose ResourceClaim is gone are released this often
    gc_interval_s: float = Field(default=60.0, gt=0)
    # /healthz fails when the API server has not answered for this long ...
    api_unreachable_s: float = Field(default=300.0, gt=0)
    # ... or NVML has not completed a call for this long (probed every nvml_probe_interval_s)
    nvml_wedged_s: float = Field(default=60.0, gt=0)
    nvml_probe_interval_s: float = Field(default=10.0, gt=0)

    @field_validator("controller_managed_gpus", "dynamic_mig_gpus")
    @classmethod
    def _managed(cls, v: str | None) -> str | None:
        if v is not None:
            parse_gpu_set(v, 1 << 16)  # syntax only; the node's GPU count is checked at start
        return v

    @field_validator("driver_name")
    @classmethod
    def _driver(cls, v: str) -> str:
        if len(v) > 63 or not _DNS_SUBDOMAIN.match(v):
            raise ValueError(
                f"{v!r} is not a valid driver name: a lowercase DNS subdomain of at most 63 "
                "characters, e.g. gpu.gpudra.io"
            )
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in ("nvml", "mock"):
            raise ValueError(f"backend must be 'nvml' or 'mock', not {v!r}")
        return v

    @model_validator(mode="after")
    def _mock_needs_profile(self) -> KubeletPluginSettings:
        if self.backend == "mock" and (self.profile is None) == (self.profile_file is None):
            raise ValueError("the mock backend needs exactly one of profile or profile_file")
        return self

    @property
    def plugin_path(self) -> Path:
        return self.plugin_dir or Path("/var/lib/kubelet/plugins") / self.driver_name

    @property
    def dra_socket(self) -> Path:
        return self.plugin_path / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        return self.registry_dir / f"{self.driver_name}-reg.sock"

    @property
    def checkpoint_file(self) -> Path:
        return self.plugin_path / "checkpoint.json"

    @property
    def dev_root(self) -> Path | None:
        if self.backend != "mock":
            return None
        return self.fake_dev_root or self.plugin_path / "fake-dev"
