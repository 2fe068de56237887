"""Settings both node daemons share (``gpudra kubelet-plugin`` and ``gpudra device-plugin``):
the node, the GPUs served and their lock, CDI, the mock's device files, GPU fault damping,
the NVML probe, and the metrics port.

Declared once here, so each concept has one name, one type and one meaning in both daemons'
flags, environment and config files.  What differs between the daemons (their own
directories, and so the defaults of the lock and fake-dev dirs) stays in their models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic_settings import NoDecode

from gpudra.catalogue.gpuset import GpuSet, GpuSetError


def _gpu_set(value: object) -> GpuSet:
    if isinstance(value, GpuSet):
        return value
    if value is None or isinstance(value, str):
        return GpuSet.parse(value)
    raise ValueError(f"expected a GPU set (all, none, 4-7, 0,2), got {value!r}")


# a GPU set, parsed once when the settings are read (syntax; the node's GPU count is checked
# when the daemon starts); written back as the user spelled it
GpuSetting = Annotated[
    GpuSet, NoDecode, BeforeValidator(_gpu_set), PlainSerializer(str, return_type=str)
]


class NodeSettings(BaseModel):
    """Mixed into the settings model of each node daemon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_name: str = Field(
        min_length=1, description="this node's name (the chart sets $GPUDRA_NODE_NAME)"
    )
    cdi_dir: Path = Field(default=Path("/var/run/cdi"), description="CDI spec dir")
    gpus: GpuSetting = Field(
        default=GpuSet(every=True, text="all"),
        description="the GPUs this daemon serves (all, none, 4-7, 0,2); a GPU is served by the "
        "DRA plugin or the device plugin, never both",
    )
    gpu_lock_dir: Path | None = Field(
        default=None,
        description="where each served GPU is locked against the other daemon "
        "(default <kubelet dir>/gpudra/gpus)",
    )
    fake_dev_root: Path | None = Field(
        default=None,
        description="mock: host dir with stand-in /dev/nvidia* files (default: fake-dev in "
        "the daemon's own dir)",
    )
    health_recovery_s: float = Field(
        default=30.0,
        ge=0,
        description="a GPU with a fault is healthy again (taints removed, Healthy in "
        "ListAndWatch) once it has recovered for this long (damps a flapping GPU)",
    )
    nvml_probe_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often the NVML probe reads the GPUs (lost GPUs without an event, "
        "MIG layout, NVML's recovery action)",
        # the device plugin's name for it until the two daemons shared one probe
        json_schema_extra={
            "legacy_flags": ["--health-probe-interval-s"],
            "legacy_keys": ["healthProbeIntervalS"],
        },
    )
    nvml_wedged_s: float = Field(
        default=60.0,
        gt=0,
        description="/healthz fails when NVML has not completed a call for this long",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="serve Prometheus /metrics and /healthz (the DRA plugin: also /readyz) "
        "on this port (0: off)",
    )

    def check_gpu_sets(self, gpu_count: int, *fields: str) -> None:
        """Every GPU set among ``gpus`` and ``fields`` names GPUs this node has: else
        ``GpuSetError`` naming the setting, before the daemon takes anything."""
        for field in ("gpus", *fields):
            try:
                getattr(self, field).resolve(gpu_count)
            except GpuSetError as e:
                raise GpuSetError(f"invalid settings: {field}: {e}") from e
