"""Claims that got a share of a GPU (consumable capacity, KEP-5075): what prepare makes of
an allocation's ``shareID`` and ``consumedCapacity`` (pure: data in, data out).

A GPU published with ``allowMultipleAllocations`` is allocated to several claims, each
result carrying a ``shareID`` and what it consumes of the device's capacities (``memory``,
``multiprocessors``, ``shares``; quantities).  The shares of one GPU are enforced by one MPS
control daemon for the GPU (``<mps root>/gpu-<uuid>/{pipe,log}``), shared by every claim on
it, with no daemon-wide defaults: each claim's share is set on its own clients, in its
containers' environment (``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``: the consumed memory;
``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``: the consumed multiprocessors as a percentage of the
GPU's, rounded up).  The claim's own MPS config, if any, still counts: its default thread
percentage when no multiprocessors were consumed, its pinned limit when smaller.

A container talks to one MPS daemon (one ``CUDA_MPS_PIPE_DIRECTORY``), so a claim holding a
share holds shares of one GPU only, and nothing exclusive beside them: anything else is
refused, saying so (NVIDIA's driver has the same limit, its issue #1283).  Two results of
one claim on the same GPU are one device to prepare, their consumption added up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpudra.api.claim import DeviceRequestAllocationResult
from gpudra.common.errors import GpudraError
from gpudra.kubeletplugin.sharing.claim_config import ConfigEntry, MpsConfig, pinned_limits
from gpudra.kubetypes.quantity import Quantity, QuantityError, exact, parse_quantity
from gpudra.nodestate.checkpoint import MpsPlan, PreparedDevice

MIB = 1024 * 1024
# the capacities a share's limits are read from (the catalogue's capacity names)
MEMORY, MULTIPROCESSORS = "memory", "multiprocessors"
ONE_GPU = (
    "a container talks to one MPS daemon (one CUDA_MPS_PIPE_DIRECTORY), so one claim may "
    "hold shares of one GPU only: ask for one device per claim (NVIDIA's driver has the same "
    "limit, its issue #1283)"
)


class ShareError(GpudraError, ValueError):
    """A claim's shares cannot be prepared; the message says why."""


@dataclass(frozen=True)
class Share:
    """What one claim holds of one device: its (first) shareID and what it consumes."""

    share_id: str
    memory_mib: int
    multiprocessors: int


def _whole(q: Quantity) -> int:
    """A non-negative quantity rounded down to a whole number."""
    return math.floor(exact(q))


def _consumed(result: DeviceRequestAllocationResult, name: str) -> int:
    text = (result.get("consumedCapacity") or {}).get(name)
    if text is None:
        return 0
    try:
        q = parse_quantity(str(text))
    except QuantityError as e:
        raise ShareError(
            f"device {result.get('device')}: consumedCapacity.{name} {text!r} is not a "
            f"quantity: {e}",
        ) from e
    if q.sign < 0:
        raise ShareError(
            f"device {result.get('device')}: consumedCapacity.{name} {text!r} is negative",
        )
    return _whole(q)


def device_share(results: Sequence[DeviceRequestAllocationResult]) -> Share | None:
    """What a claim holds of one device, from its results for it (several requests on one
    device: their consumption added up); None when none is a share."""
    shared = [r for r in results if r.get("shareID")]
    if not shared:
        return None
    memory = sum(_consumed(r, MEMORY) for r in shared)
    return Share(
        share_id=str(shared[0].get("shareID")),
        memory_mib=memory // MIB,
        multiprocessors=sum(_consumed(r, MULTIPROCESSORS) for r in shared),
    )


def check_one_gpu(devices: Sequence[PreparedDevice]) -> None:
    """A claim holding shares holds shares of one GPU and nothing else (ShareError: why
    not)."""
    shares = [d for d in devices if d.share_id]
    if not shares:
        return
    exclusive = [d.device for d in devices if not d.share_id]
    if exclusive:
        raise ShareError(
            f"it holds shares ({', '.join(d.device for d in shares)}) and exclusive devices "
            f"({', '.join(exclusive)}); {ONE_GPU}",
        )
    gpus = sorted({d.uuid for d in shares})
    if len(gpus) > 1:
        raise ShareError(
            f"it holds shares of {len(gpus)} GPUs ({', '.join(d.device for d in shares)}); "
            f"{ONE_GPU}",
        )
    if not gpus[0]:
        raise ShareError(
            f"device {shares[0].device} is shared but has no UUID yet (a dynamic-MIG "
            "placement); only whole GPUs and existing devices can be shared",
        )


def multiprocessors_of(slice_device: Mapping[str, Any] | None) -> int:
    """The device's multiprocessors as published (0: not known)."""
    capacity = (slice_device or {}).get("capacity") or {}
    value = (capacity.get(MULTIPROCESSORS) or {}).get("value")
    try:
        return _whole(parse_quantity(str(value))) if value is not None else 0
    except QuantityError:
        return 0


def mps_config(entry: ConfigEntry | None) -> MpsConfig:
    """The MPS settings of a claim's MPS config (none: the defaults)."""
    sharing = entry.config.sharing if entry is not None else None
    return (sharing.mps_config if sharing else None) or MpsConfig()


def shared_plan(
    device: PreparedDevice,
    config: MpsConfig,
    where: str,
    *,
    mps_root: str,
    slice_device: Mapping[str, Any] | None,
) -> MpsPlan:
    """The GPU's shared daemon as one share claim uses it: the daemon without defaults, the
    claim's share on its clients, the claim's MPS ``config`` (at ``where``) applied as the
    module docstring says (ClaimConfigError: a per-device limit naming another device).
    ``slice_device``: the device as published, for the GPU's multiprocessors."""
    (limit,) = pinned_limits(config, (device.uuid,), where)
    limits = [m for m in (device.share_memory_mib, int(limit.removesuffix("M") or 0)) if m > 0]
    threads = config.default_active_thread_percentage
    total = multiprocessors_of(slice_device)
    if device.share_multiprocessors > 0 and total > 0:
        threads = min(100, -(-100 * device.share_multiprocessors // total))  # rounded up
    root = f"{mps_root.rstrip('/')}/gpu-{device.uuid}"
    return MpsPlan(
        uuids=(device.uuid,),
        pipe_dir=f"{root}/pipe",
        log_dir=f"{root}/log",
        shared=True,
        client_pinned_limit=f"{min(limits)}M" if limits else "",
        client_thread_percentage=threads,
    )
