"""What went wrong preparing or unpreparing one claim (pure): ``ErrorType`` and ``PrepareError``.

A claim's failure is reported to the kubelet for that claim alone and counted under its
``ErrorType``, decided where the error is raised: claim resolution (``prepare``), its sharing
config (``sharing``), the side effects (``node``, ``sharing.effects``).  Errors of the edges
(Kubernetes, NVML, CDI, checkpoint) get theirs from ``reporting``.
"""

from __future__ import annotations

from enum import StrEnum

from gpudra.common.errors import GpudraError


class ErrorType(StrEnum):
    """What went wrong with one claim: a small fixed set (the values are the node metrics'
    ``error_type`` labels, ``gpudra.metrics.node.PREPARE_ERROR_TYPES``)."""

    INVALID_REQUEST = "invalid_request"  # a claim UID that is no Kubernetes UID
    CLAIM_NOT_FOUND = "claim_not_found"  # the claim is gone, or recreated under another UID
    NOT_ALLOCATED = "not_allocated"  # not allocated, or not to this node, driver or pool
    API_ERROR = "api_error"  # the API server failed or timed out reading the claim
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the call's deadline passed, or it was cancelled
    UNKNOWN_DEVICE = "unknown_device"  # a device not (or no longer) in the node catalogue
    DEVICE_UNHEALTHY = "device_unhealthy"  # its GPU has a fatal fault or is lost
    INVALID_CONFIG = "invalid_config"  # an opaque config of ours that is malformed
    UNSUPPORTED_CONFIG = "unsupported_config"  # a valid config gpudra cannot honour (yet)
    # prepared for another claim (and not both may share), or its MIG placement is taken by
    # an instance gpudra did not create
    DEVICE_BUSY = "device_busy"
    MIG_ERROR = "mig_error"  # creating or destroying a MIG instance failed
    MPS_ERROR = "mps_error"  # starting or stopping the claim's MPS daemon failed
    NVML_ERROR = "nvml_error"  # NVML failed reading the GPUs
    CDI_ERROR = "cdi_error"  # the claim's CDI spec could not be written or removed
    CHECKPOINT_ERROR = "checkpoint_error"  # the checkpoint could not be written
    INTERNAL = "internal"  # an unexpected error (a bug)


class PrepareError(GpudraError):
    """This claim cannot be prepared here; the message is reported to the kubelet, ``kind``
    says what went wrong."""

    def __init__(self, message: str, kind: ErrorType) -> None:
        super().__init__(message)
        self.kind = kind
