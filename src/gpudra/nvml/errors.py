"""Typed errors of the GPU backends.  Each maps one NVML failure class, so callers can decide
(retry, report per claim, taint a device) by type, never by parsing messages."""

from __future__ import annotations

from gpudra.common.errors import GpudraError


class NvmlError(GpudraError):
    """Base of every backend error.  ``retryable`` says whether trying again can help."""

    retryable = False


class LibraryNotFound(NvmlError):
    """libnvidia-ml could not be loaded (no driver on this machine)."""


class NotSupported(NvmlError):
    """The GPU or driver does not support the operation (e.g. MIG on a GPU without it)."""


class InvalidArgument(NvmlError):
    """A caller passed something the GPU rejects (unknown profile, impossible placement)."""


class InsufficientResources(NvmlError):
    """The placement is taken, or a profile's instance limit is reached."""


class DeviceNotFound(NvmlError):
    """No device, MIG instance or profile with that identity exists."""


class GpuLost(NvmlError):
    """The GPU fell off the bus or stopped answering."""


class InUse(NvmlError):
    """The device is busy (e.g. a MIG instance with running processes)."""

    retryable = True


class ToolFailed(NvmlError):
    """A driver tool run for what NVML has no call for (``nvidia-smi``) is missing, or failed
    for a reason none of the classes above names; the message carries what it printed."""


class ToolTimedOut(ToolFailed):
    """The tool did not answer in time (a driver busy or stuck); trying again can help."""

    retryable = True


class ProfileError(NvmlError):
    """A mock profile is unknown or malformed; the message names the file and field."""
