"""A whole GPU published for consumable capacity (pure): several claims share one device.

KEP-5075 (DRAConsumableCapacity, beta and on by default from Kubernetes 1.36): a device with
``allowMultipleAllocations`` can be allocated to several claims at once, each claim consuming
part of the capacities that carry a ``requestPolicy``.  A shared GPU is the whole-GPU device
(same name and attributes, so selectors written for whole GPUs still match) plus:

* ``memory`` - claims ask for a memory share, in steps of 1 MiB up to the whole GPU.  A
  claim that asks nothing gets the default: with ``shares`` N, a 1/N share rounded down to
  a MiB, so N claims that ask nothing fit exactly; without ``shares``, the whole memory (a
  claim that does not say how much it needs is not squeezed next to others).
* ``multiprocessors`` - a claim that does not ask consumes none (default 0): without a
  policy the scheduler would let it consume all of them, and no second claim could share.
* ``shares`` (only with ``shares`` >= 2) - N slots, one per claim by default, which caps the
  claims on the GPU at N whatever memory they ask for (e.g. the MPS client limit).

Each policy passes the API server's validation (``pkg/apis/resource/validation``): min <=
default <= max <= value, min + step <= value, default and max whole steps from min.
"""

from __future__ import annotations

from typing import Any

from gpudra.catalogue.render_gpu import gpu_device
from gpudra.devices.gpu import Gpu
from gpudra.devices.inventory import Inventory

MIB = 1024 * 1024
MAX_SHARES = 48  # the MPS server's client limit on Volta and later


def _ranged(value: int, *, default: str, low: str, high: str, step: str) -> dict[str, Any]:
    """A capacity of ``value`` that claims consume in ``step``s from ``low`` to ``high``."""
    return {
        "value": str(value),
        "requestPolicy": {
            "default": default,
            "validRange": {"min": low, "max": high, "step": step},
        },
    }


def _counted(n: int, *, default: int, low: int) -> dict[str, Any]:
    """A capacity of ``n`` units, consumed one by one from ``low``."""
    return _ranged(n, default=str(default), low=str(low), high=str(n), step="1")


def memory_capacity(memory_bytes: int, shares: int) -> dict[str, Any]:
    """The GPU's memory as consumable capacity: 1 MiB steps up to its whole MiB (a GPU whose
    memory is not a whole number of MiB offers the whole MiB below it)."""
    mib = memory_bytes // MIB
    default = mib // shares if shares else mib
    return _ranged(
        memory_bytes, default=str(default * MIB), low="1Mi", high=str(mib * MIB), step="1Mi"
    )


def shared_gpu_device(
    inv: Inventory, gpu: Gpu, groups: dict[int, str], *, shares: int = 0
) -> dict[str, Any]:
    """The slice device of a shared GPU (see the module docstring)."""
    if shares and not 2 <= shares <= MAX_SHARES:
        raise ValueError(f"shares must be 0 or 2..{MAX_SHARES}, got {shares}")
    dev = gpu_device(inv, gpu, groups)
    capacity: dict[str, Any] = {"memory": memory_capacity(gpu.memory_bytes, shares)}
    if gpu.multiprocessors:
        capacity["multiprocessors"] = _counted(gpu.multiprocessors, default=0, low=0)
    if shares:
        capacity["shares"] = _counted(shares, default=1, low=1)
    dev["allowMultipleAllocations"] = True
    dev["capacity"] = capacity
    return dev
