"""NVML's GPU recovery action (``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION``) -> ``RecoveryAction``.

Takes the binding as an argument (like ``translate``), so it is tested with a fake; only
``real`` passes it pynvml.  The key decision: the field is advice that may be missing, so a
read never raises.  A driver without the field, a GPU that is lost, a binding without
``nvmlDeviceGetFieldValues``, a value of an unexpected type: all read as None ("NVML does
not say"), and the caller falls back to the XID ignore list.  A number newer than this
table is an action all the same (``OTHER``, fatal), never NONE.

What this rests on (and where it was checked):

* field id 230 = ``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION``: nvidia-ml-py 13.615.71
  ``pynvml.py`` (the binding in our venv); NVIDIA's k8s-test-infra mock NVML
  (``healthGPURecoveryActionField = 230``); the 565 driver release notes quoted in
  NVIDIA/k8s-device-plugin PR #1241 ("Added new fieldId to query GPU recovery action
  NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", with the event type ``nvmlEventTypeGpuRecoveryAction``).
  It replaces fields 226/227 (``NVML_FI_DEV_RESET_STATUS``, ``..._DRAIN_AND_RESET_STATUS``,
  deprecated in the binding).  Field ids are "guaranteed never to change" (the binding's
  comment on its field identifiers), so a binding too old to name it still reads 230.
* values (``nvmlDeviceGpuRecoveryAction_t``): NONE 0, GPU_RESET 1, NODE_REBOOT 2, DRAIN_P2P 3,
  DRAIN_AND_RESET 4 (same binding; cuda-python's ``cuda.bindings.nvml.DeviceGpuRecoveryAction``
  docs).  Above 4 the bindings disagree: 13.615.71 has RECOVER_IMEX_DOMAIN 5, BUS_RESET 6,
  SYSTEM_REBOOT 7, the release mirrored in XuehaiPan/nvidia-ml-py GPU_RESET_BUS 5; hence
  ``OTHER``.  (NVIDIA's DRA driver, PR #1441, treats RECOVER_IMEX_DOMAIN as non-fatal for
  the GPU; with 5 meaning two things we name none above 4 and stay on the safe side.)
* the call: ``pynvml.nvmlDeviceGetFieldValues(handle, fieldIds)`` takes a list of field ids
  (or ``(fieldId, scopeId)`` pairs) and returns a ctypes array of ``c_nvmlFieldValue_t``
  (``fieldId``, ``scopeId``, ``timestamp``, ``latencyUsec``, ``valueType``, ``nvmlReturn``,
  ``value``: a ``c_nvmlValue_t`` union of ``dVal``, ``uiVal``, ``ulVal``, ``ullVal``,
  ``sllVal``, ``siVal``, ``usVal``).  It raises ``NVMLError`` only when the whole call fails;
  a field the driver does not know comes back in that entry's ``nvmlReturn``
  (``NVML_ERROR_NOT_SUPPORTED``): "NVML_SUCCESS if any values in values were populated.
  Note that you must check the nvmlReturn field of each value" (NVML API reference, Field
  Value Queries).  The value types are ``_nvmlValueType_t``: DOUBLE 0, UNSIGNED_INT 1,
  UNSIGNED_LONG 2, UNSIGNED_LONG_LONG 3, SIGNED_LONG_LONG 4, SIGNED_INT 5, UNSIGNED_SHORT 6;
  NVIDIA's code reads this field as ``value.uiVal``.
"""

from __future__ import annotations

import logging
from typing import Any

from gpudra.devices.faults import RecoveryAction

log = logging.getLogger(__name__)

FIELD_ID = 230  # NVML_FI_DEV_GET_GPU_RECOVERY_ACTION; numbers are NVML's ABI, stable
NVML_ACTIONS: dict[int, RecoveryAction] = {
    0: RecoveryAction.NONE,
    1: RecoveryAction.GPU_RESET,
    2: RecoveryAction.NODE_REBOOT,
    3: RecoveryAction.DRAIN_P2P,
    4: RecoveryAction.DRAIN_AND_RESET,
}
# _nvmlValueType_t -> the c_nvmlValue_t member holding an integer of that type
_INT_MEMBERS = {1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def read_recovery_action(lib: Any, handle: Any) -> RecoveryAction | None:
    """The GPU's recovery action now, or None where NVML does not say (never raises)."""
    field_id = getattr(lib, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", FIELD_ID)
    try:
        value = lib.nvmlDeviceGetFieldValues(handle, [field_id])[0]
    except (lib.NVMLError, AttributeError) as e:  # old driver or binding, a lost GPU
        log.debug("GPU recovery action unreadable: %s", e)
        return None
    status = int(value.nvmlReturn)
    if status != getattr(lib, "NVML_SUCCESS", 0):  # most often NOT_SUPPORTED: no such field
        log.debug("GPU recovery action not given: NVML return %d", status)
        return None
    member = _INT_MEMBERS.get(int(value.valueType))
    if member is None:
        return None
    return NVML_ACTIONS.get(int(getattr(value.value, member)), RecoveryAction.OTHER)
