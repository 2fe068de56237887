"""Settings of ``gpudra kubelet-plugin``, the DRA node daemon: paths, GPU modes, health limits.

Each field's description is its ``--help`` text; the default is added to it from the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpudra.catalogue.gpuset import GpuSet
from gpudra.catalogue.render_shared import MAX_SHARES
from gpudra.resourceapi import DRIVER_NAME
from gpudra.settings.backend import BackendSettings
from gpudra.settings.cluster import DriverName, KubeconfigSetting
from gpudra.settings.node import GpuSetting, NodeSettings


class KubeletPluginSettings(BaseSettings, NodeSettings, KubeconfigSetting, BackendSettings):
    """``gpudra kubelet-plugin``."""

    model_config = SettingsConfigDict(env_prefix="GPUDRA_", extra="forbid", frozen=True)

    driver_name: DriverName = Field(default=DRIVER_NAME, description="DRA driver name")
    plugin_dir: Path | None = Field(
        default=None,
        description="DRA socket + checkpoint dir (default /var/lib/kubelet/plugins/<driver>)",
    )
    registry_dir: Path = Field(
        default=Path("/var/lib/kubelet/plugins_registry"),
        description="kubelet plugin registry dir",
    )
    profile_node_label: str | None = Field(
        default=None,
        description="mock: take this node's machine profile from its label of this key "
        "(--profile is the default)",
    )
    controller_managed_gpus: GpuSetting = Field(
        default=GpuSet(),
        description="GPUs only the gpudra controller allocates: all, none, 4-7, 0,2 (GPU indices)",
    )
    dynamic_mig_gpus: GpuSetting = Field(
        default=GpuSet(),
        description="MIG-capable GPUs published as dynamic MIG placements (created at "
        "prepare): all, 0-3",
    )
    shared_gpus: GpuSetting = Field(
        default=GpuSet(),
        description="GPUs published for consumable capacity (several claims share one GPU, "
        "each with a memory share; Kubernetes 1.36+): all, 0-3",
    )
    gpu_shares: int = Field(
        default=0,
        description="the count of claims that can share one GPU of --shared-gpus (its "
        "shares capacity, one per claim; a claim that asks for no memory gets 1/N of it): "
        f"2..{MAX_SHARES}, or 0 for no shares capacity (a claim that asks for no memory gets "
        "all of it)",
    )
    remove_unknown_mig: bool = Field(
        default=False,
        description="destroy MIG instances on dynamic-MIG GPUs that no claim holds",
    )
    boot_id_file: Path = Field(
        default=Path("/proc/sys/kernel/random/boot_id"),
        description="the node's boot id: a change since the checkpoint means a reboot (CDI "
        "specs and MIG instances are gone), and every claim is prepared again",
    )
    gc_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="release checkpointed claims whose ResourceClaim is gone this often",
    )
    api_unreachable_s: float = Field(
        default=300.0,
        gt=0,
        description="/healthz fails when the API server has not answered for this long",
    )
    lost_gpu_taint_effect: Literal["NoExecute", "NoSchedule"] = Field(
        default="NoExecute",
        description="effect of the gpu.gpudra.io/gpu-lost taint: NoExecute evicts the pods "
        "using the GPU (where the cluster evicts on device taints), NoSchedule only keeps "
        "new claims away",
    )
    health_stream: bool = Field(
        default=True,
        description="serve the kubelet's device health stream (v1alpha1.DRAResourceHealth), "
        "which puts device health into pods' allocatedResourcesStatus",
    )
    health_heartbeat_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="the health stream resends every device's health this often; the "
        "kubelet is told a device is Unknown after three missed heartbeats",
    )

    @field_validator("gpu_shares")
    @classmethod
    def _gpu_shares(cls, v: int) -> int:
        if v != 0 and not 2 <= v <= MAX_SHARES:
            raise ValueError(
                f"must be 0 (no shares capacity) or 2..{MAX_SHARES} (the claims that can share "
                f"one GPU), got {v}"
            )
        return v

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
    def gpu_lock_path(self) -> Path:
        return self.gpu_lock_dir or self.registry_dir.parent / "gpudra" / "gpus"

    @property
    def dev_root(self) -> Path | None:
        if self.backend != "mock":
            return None
        return self.fake_dev_root or self.plugin_path / "fake-dev"
