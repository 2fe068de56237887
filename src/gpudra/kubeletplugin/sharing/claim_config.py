"""gpudra's opaque device configuration, ``resource.gpudra.io/v1beta1``: parse, check, merge
(pure).

The kinds and fields are NVIDIA's ``resource.nvidia.com/v1beta1`` ``GpuConfig`` and
``MigDeviceConfig`` (``sharing.strategy`` TimeSlicing | MPS, ``timeSlicingConfig.interval``,
``mpsConfig.{defaultActiveThreadPercentage, defaultPinnedDeviceMemoryLimit,
defaultPerDevicePinnedMemoryLimit}``), so a claim ports by changing ``opaque.driver`` and
``apiVersion``.  Parsing is strict: an unknown field, a wrong kind or apiVersion, a value
out of range is a ``ClaimConfigError`` naming the field path (``spec.devices.config[1].opaque
.parameters.sharing.mpsConfig...``) and what is allowed.

Which config applies to a device is upstream's rule: the allocation's ``devices.config``
lists the DeviceClass configs (``source: FromClass``) before the claim's (``FromClaim``), each
for all requests or the ones it names (a request ``main`` covers its subrequests
``main/sub``); the last one for the device's request and kind wins.  Configs of other drivers
are not ours to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from gpudra.common.errors import GpudraError
from gpudra.common.model import Model
from gpudra.devices.timeslice import Interval
from gpudra.kubetypes.quantity import QuantityError, parse_quantity

API_VERSION = "resource.gpudra.io/v1beta1"
NVIDIA_API_VERSION = "resource.nvidia.com/v1beta1"
GPU_CONFIG, MIG_CONFIG = "GpuConfig", "MigDeviceConfig"
KINDS = (GPU_CONFIG, MIG_CONFIG)
MIN_PINNED_BYTES = 1024 * 1024  # MPS takes the limit in whole megabytes
PER_DEVICE = "sharing.mpsConfig.defaultPerDevicePinnedMemoryLimit"


class ClaimConfigError(GpudraError, ValueError):
    pass


class Strategy(StrEnum):
    TIME_SLICING = "TimeSlicing"
    MPS = "MPS"


# the messages the chart's admission policy gives too (templates/admission-claimconfig.yaml)
PINNED_MESSAGE = "must be a quantity of at least 1Mi (the smallest limit MPS takes), e.g. 10Gi"
THREADS_MESSAGE = "must be an integer from 1 to 100"


def _pinned_limit(value: str) -> str:
    try:
        n = parse_quantity(value).as_int64()
    except QuantityError as e:
        raise ValueError(PINNED_MESSAGE) from e
    if n is None or n < MIN_PINNED_BYTES:
        raise ValueError(PINNED_MESSAGE)
    return value


class TimeSlicingConfig(Model):
    interval: Interval = Interval.DEFAULT


class MpsConfig(Model):
    default_active_thread_percentage: int | None = None
    default_pinned_device_memory_limit: str | None = None
    # device UUID, or index into the claim's devices of this config -> limit
    default_per_device_pinned_memory_limit: dict[str, str] = Field(default_factory=dict)

    @field_validator("default_active_thread_percentage", mode="before")
    @classmethod
    def _threads(cls, v: Any) -> Any:
        if v is not None and (type(v) is not int or not 1 <= v <= 100):
            raise ValueError(THREADS_MESSAGE)
        return v

    @field_validator("default_pinned_device_memory_limit")
    @classmethod
    def _default_limit(cls, v: str | None) -> str | None:
        return None if v is None else _pinned_limit(v)

    @field_validator("default_per_device_pinned_memory_limit")
    @classmethod
    def _per_device(cls, v: dict[str, str]) -> dict[str, str]:
        for key, limit in v.items():
            if not (key.isdigit() or key.startswith(("GPU-", "MIG-"))):
                raise ValueError(
                    f"key {key!r} is neither a device UUID (GPU-..., MIG-...) nor an index "
                    "into the claim's devices (0, 1, ...)"
                )
            _pinned_limit(limit)
        return v


class GpuSharing(Model):
    strategy: Strategy
    time_slicing_config: TimeSlicingConfig | None = None
    mps_config: MpsConfig | None = None

    @model_validator(mode="after")
    def _one_strategy(self) -> GpuSharing:
        if self.strategy is Strategy.TIME_SLICING and self.mps_config is not None:
            raise ValueError("mpsConfig goes with strategy MPS, not TimeSlicing")
        if self.strategy is Strategy.MPS and self.time_slicing_config is not None:
            raise ValueError("timeSlicingConfig goes with strategy TimeSlicing, not MPS")
        return self


class MigSharing(Model):
    strategy: Strategy
    mps_config: MpsConfig | None = None

    @model_validator(mode="after")
    def _one_strategy(self) -> MigSharing:
        if self.strategy is Strategy.TIME_SLICING and self.mps_config is not None:
            raise ValueError("mpsConfig goes with strategy MPS, not TimeSlicing")
        return self


class GpuConfig(Model):
    api_version: Literal["resource.gpudra.io/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["GpuConfig"]
    sharing: GpuSharing | None = None


class MigDeviceConfig(Model):
    api_version: Literal["resource.gpudra.io/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["MigDeviceConfig"]
    sharing: MigSharing | None = None


DeviceConfig = GpuConfig | MigDeviceConfig


def _describe(err: ValidationError, where: str) -> str:
    lines = []
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"])
        at = f"{where}.{path}" if path else where
        msg = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (fields are NVIDIA's, camelCase)"
        elif item["type"] == "enum":
            allowed = (item.get("ctx") or {}).get("expected", "")
            msg = f"{item.get('input')!r} is not allowed; allowed: {allowed}"
        lines.append(f"{at}: {msg}")
    return "; ".join(lines)


def parse(parameters: Any, where: str) -> DeviceConfig:
    """One config's ``opaque.parameters`` (``where``: its path, for the errors)."""
    if not isinstance(parameters, Mapping):
        raise ClaimConfigError(f"{where}: must be an object with apiVersion and kind")
    version, kind = parameters.get("apiVersion"), parameters.get("kind")
    if version == NVIDIA_API_VERSION:
        raise ClaimConfigError(
            f"{where}.apiVersion: {NVIDIA_API_VERSION} is NVIDIA's driver's; for gpudra use "
            f"{API_VERSION} (same kinds and fields)"
        )
    if version != API_VERSION:
        raise ClaimConfigError(
            f"{where}.apiVersion: {version!r} is not allowed; allowed: {API_VERSION}"
        )
    if kind not in KINDS:
        raise ClaimConfigError(
            f"{where}.kind: {kind!r} is not allowed; allowed: {', '.join(KINDS)}"
        )
    model = GpuConfig if kind == GPU_CONFIG else MigDeviceConfig
    try:
        return model.model_validate(dict(parameters))
    except ValidationError as e:
        raise ClaimConfigError(_describe(e, where)) from e


@dataclass(frozen=True)
class ConfigEntry:
    """One of our driver's configs in an allocation, parsed."""

    index: int  # in ``status.allocation.devices.config``
    source: str  # FromClass | FromClaim
    requests: tuple[str, ...]  # empty: every request
    config: DeviceConfig
    where: str  # its path, as the user wrote it

    def covers(self, request: str) -> bool:
        if not self.requests:
            return True
        base = request.split("/", 1)[0]
        return request in self.requests or base in self.requests


def allocation_configs(configs: Sequence[Mapping[str, Any]], driver: str) -> list[ConfigEntry]:
    """Our driver's configs of an allocation's ``devices.config``, parsed (ClaimConfigError
    for the first bad one; every one is checked, whether or not a device of it is here)."""
    out = []
    counts = {"FromClass": 0, "FromClaim": 0}
    for i, c in enumerate(configs):
        source = str(c.get("source", "FromClaim"))
        # the user's own numbering: the claim's spec.devices.config[n], or the class's
        n = counts.get(source, 0)
        counts[source] = n + 1
        opaque = c.get("opaque") or {}
        if opaque.get("driver") != driver:
            continue
        origin = "DeviceClass config" if source == "FromClass" else "spec.devices.config"
        where = f"{origin}[{n}].opaque.parameters"
        config = parse(opaque.get("parameters"), where)
        out.append(
            ConfigEntry(
                index=i,
                source=source,
                requests=tuple(c.get("requests") or ()),
                config=config,
                where=where,
            )
        )
    return out


def config_for(entries: Sequence[ConfigEntry], request: str, *, mig: bool) -> ConfigEntry | None:
    """The config that applies to a device of ``request`` (a MIG device: MigDeviceConfig, a
    whole GPU: GpuConfig): the last one covering it.  A config of the other kind naming the
    request is an error (it would silently do nothing)."""
    want = MIG_CONFIG if mig else GPU_CONFIG
    chosen = None
    for e in entries:
        if not e.covers(request):
            continue
        if e.config.kind == want:
            chosen = e
        elif e.requests:
            device = "a MIG device" if mig else "a whole GPU"
            raise ClaimConfigError(
                f"{e.where}.kind: {e.config.kind} cannot configure request {request!r}, which "
                f"was allocated {device}; use {want}"
            )
    return chosen


def device_sharing(
    entries: Sequence[ConfigEntry], request: str, *, mig: bool
) -> tuple[str, ConfigEntry | None]:
    """The device's config, as what prepare must do: the interval a TimeSlicing config sets
    on a whole GPU ("" for none: no config, no sharing, or a MIG device, which the driver
    time-slices anyway), and the config entry when it asks for MPS (``mps_plan`` makes the
    claim's daemon of it).  ClaimConfigError as ``config_for``."""
    entry = config_for(entries, request, mig=mig)
    sharing = entry.config.sharing if entry is not None else None
    if entry is None or sharing is None:
        return "", None
    if sharing.strategy is Strategy.MPS:
        return "", entry
    if mig or not isinstance(sharing, GpuSharing):
        return "", None
    ts = sharing.time_slicing_config
    return (ts.interval if ts else Interval.DEFAULT).value, None


def _megabytes(value: str) -> str:
    """A limit as MPS takes it: whole megabytes (MiB, rounded down), ``"<n>M"``."""
    n = parse_quantity(value).as_int64() or 0
    return f"{n // MIN_PINNED_BYTES}M"


def pinned_limits(config: MpsConfig, uuids: Sequence[str], where: str) -> tuple[str, ...]:
    """Each device's pinned memory limit (``uuids``: the claim's devices of this config, in
    order; "" for none), normalized as NVIDIA's driver does: ``defaultPinnedDeviceMemoryLimit``
    for every device, overridden by ``defaultPerDevicePinnedMemoryLimit`` keyed by UUID or by
    index into ``uuids``.  A key that names none of them is a ClaimConfigError with its path."""
    default = config.default_pinned_device_memory_limit
    out = [_megabytes(default) if default else ""] * len(uuids)
    for key, value in config.default_per_device_pinned_memory_limit.items():
        if key.isdigit():
            i = int(key)
            if i >= len(uuids):
                raise ClaimConfigError(
                    f"{where}.{PER_DEVICE}.{key}: index {i} is out of range: the claim has "
                    f"{len(uuids)} device(s) of this config (indices 0 to {len(uuids) - 1})"
                )
        elif key in uuids:
            i = list(uuids).index(key)
        else:
            raise ClaimConfigError(
                f"{where}.{PER_DEVICE}.{key}: no device of this claim has that UUID (its "
                f"devices of this config: {', '.join(u for u in uuids if u) or 'none known yet'})"
            )
        out[i] = _megabytes(value)
    return tuple(out)
