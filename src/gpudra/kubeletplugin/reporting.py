"""What the node plugin tells its metrics (pure): the ``ErrorType`` of a failed claim, and the
prepared devices by type.

An error is classified by its type, never by its message: a ``PrepareError`` carries the
kind decided where it was raised (MIG create/destroy failures are raised as such, so a bare
``NvmlError`` is a failed read of the GPUs); each edge's root error is one kind; anything
else is a bug.  The device types are read from the checkpoint records alone, so they are
the same after a restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from gpudra.cdi.writer import CdiWriteError
from gpudra.kube.errors import KubeError
from gpudra.kubeletplugin.checkpoint_store import CheckpointError
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.nodestate.checkpoint import PreparedClaim
from gpudra.nvml.errors import NvmlError

_BY_EDGE: tuple[tuple[type[Exception], ErrorType], ...] = (
    (KubeError, ErrorType.API_ERROR),
    (NvmlError, ErrorType.NVML_ERROR),
    (CdiWriteError, ErrorType.CDI_ERROR),
    (CheckpointError, ErrorType.CHECKPOINT_ERROR),
)


def error_type(e: Exception) -> ErrorType:
    """What went wrong with a claim whose prepare or unprepare raised ``e``."""
    if isinstance(e, PrepareError):
        return e.kind
    return next((kind for cls, kind in _BY_EDGE if isinstance(e, cls)), ErrorType.INTERNAL)


def device_types(claims: Iterable[PreparedClaim]) -> Counter[str]:
    """The devices of the prepared claims, by the metrics' ``device_type``: ``mig`` for a
    dynamic-MIG device (its placement is recorded) or an existing instance (static MIG:
    NVML's UUID of a MIG device is ``MIG-...``, of a GPU ``GPU-...``), ``gpu`` for a whole
    GPU.  A claim being prepared (or to be prepared again after a reboot) counts nothing."""
    return Counter(
        "mig" if d.dynamic_mig or d.uuid.startswith("MIG-") else "gpu"
        for c in claims
        if c.state == "prepared"
        for d in c.devices
    )
