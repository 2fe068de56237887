"""NVML's GPU recovery action through the real backend: read with each XID event and on
demand, NVML's numbers mapped to ``RecoveryAction``, and every way the field can be missing
(a driver before it, a binding without it, a lost GPU) read as None, never an error."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.backend import HealthEventKind
from gpudra.nvml.real import RealBackend
from gpudra.nvml.recovery_action import FIELD_ID, read_recovery_action
from tests.unit.nvml.fake_pynvml import (
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_UNKNOWN,
    FakeNvml,
    NVMLError,
    c_nvmlFieldValue_t,
    two_linked,
)

NO_ID = 0xFFFFFFFF

NVML_NUMBERS = {
    "none": (0, RecoveryAction.NONE),
    "gpu reset": (1, RecoveryAction.GPU_RESET),
    "node reboot": (2, RecoveryAction.NODE_REBOOT),
    "drain p2p": (3, RecoveryAction.DRAIN_P2P),
    "drain and reset": (4, RecoveryAction.DRAIN_AND_RESET),
    "newer than gpudra (13.x: IMEX domain)": (5, RecoveryAction.OTHER),
    "newer than gpudra (13.x: system reboot)": (7, RecoveryAction.OTHER),
    "driver before the field (NOT_SUPPORTED)": (None, None),
}


def xid_event(lib: FakeNvml, gpu: int, xid: int) -> SimpleNamespace:
    return SimpleNamespace(
        device=lib.gpus[gpu],
        eventType=lib.nvmlEventTypeXidCriticalError,
        eventData=xid,
        gpuInstanceId=NO_ID,
        computeInstanceId=NO_ID,
    )


@pytest.mark.parametrize(("number", "action"), NVML_NUMBERS.values(), ids=NVML_NUMBERS.keys())
def test_an_xid_event_carries_the_recovery_action_nvml_reads_after_it(
    number: int | None, action: RecoveryAction | None
) -> None:
    lib = two_linked()
    lib.gpus[1].recovery_action = number
    backend = RealBackend(node_name="n", lib=lib)
    lib.events.append(xid_event(lib, 1, 79))
    ev = backend.wait_health_event(1)
    assert ev is not None and (ev.kind, ev.gpu_uuid, ev.xid) == (HealthEventKind.XID, "GPU-b", 79)
    assert ev.recovery_action is action
    assert backend.recovery_action("GPU-b") is action
    assert backend.recovery_action("GPU-a") is None  # its own field: not given


def test_ecc_events_carry_no_recovery_action() -> None:
    lib = two_linked()
    lib.gpus[1].recovery_action = 1
    backend = RealBackend(node_name="n", lib=lib)
    lib.events.append(
        SimpleNamespace(
            device=lib.gpus[1],
            eventType=lib.nvmlEventTypeDoubleBitEccError,
            eventData=0,
            gpuInstanceId=NO_ID,
            computeInstanceId=NO_ID,
        )
    )
    ev = backend.wait_health_event(1)
    assert ev is not None and ev.kind is HealthEventKind.ECC_DOUBLE_BIT
    assert ev.recovery_action is None


def test_a_recovery_action_back_to_none_reads_as_none() -> None:
    lib = two_linked()
    lib.gpus[0].recovery_action = 1
    backend = RealBackend(node_name="n", lib=lib)
    assert backend.recovery_action("GPU-a") is RecoveryAction.GPU_RESET
    lib.gpus[0].recovery_action = 0  # the GPU was reset
    assert backend.recovery_action("GPU-a") is RecoveryAction.NONE


class NoFieldValues(FakeNvml):
    """A binding from before ``nvmlDeviceGetFieldValues`` (nor the field's name)."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("nvmlDeviceGetFieldValues", "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION"):
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_every_missing_field_reads_as_unknown_and_never_raises() -> None:
    lib = two_linked()
    for g in lib.gpus:
        g.recovery_action = 1
    backend = RealBackend(node_name="n", lib=lib)
    assert backend.recovery_action("GPU-nope") is None  # a GPU NVML does not know
    lib.gpus[0].fail["nvmlDeviceGetFieldValues"] = NVML_ERROR_FUNCTION_NOT_FOUND  # old driver
    assert backend.recovery_action("GPU-a") is None
    lib.gpus[0].fail["nvmlDeviceGetFieldValues"] = NVML_ERROR_UNKNOWN
    assert backend.recovery_action("GPU-a") is None
    lib.gpus[1].lost = True
    assert backend.recovery_action("GPU-b") is None
    old = NoFieldValues(two_linked().gpus)
    assert RealBackend(node_name="n", lib=old).recovery_action("GPU-a") is None


def test_an_xid_event_whose_field_read_fails_still_arrives() -> None:
    lib = two_linked()
    lib.gpus[1].fail["nvmlDeviceGetFieldValues"] = NVML_ERROR_UNKNOWN
    backend = RealBackend(node_name="n", lib=lib)
    lib.events.append(xid_event(lib, 1, 48))
    ev = backend.wait_health_event(1)
    assert ev is not None and (ev.xid, ev.recovery_action) == (48, None)


def test_a_binding_without_the_constant_asks_for_field_230() -> None:
    lib = two_linked()
    lib.gpus[0].recovery_action = 2
    del lib.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION  # an instance attribute in the fake
    assert not hasattr(lib, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION")
    assert FIELD_ID == 230
    assert (
        RealBackend(node_name="n", lib=lib).recovery_action("GPU-a") is RecoveryAction.NODE_REBOOT
    )


VALUE_TYPES = {
    "unsigned int": (1, "uiVal", RecoveryAction.DRAIN_P2P),
    "unsigned long long": (3, "ullVal", RecoveryAction.DRAIN_P2P),
    "signed int": (5, "siVal", RecoveryAction.DRAIN_P2P),
    "double: not an action": (0, "dVal", None),
}


@pytest.mark.parametrize(("vtype", "member", "action"), VALUE_TYPES.values(), ids=VALUE_TYPES)
def test_the_value_is_read_from_the_member_its_type_names(
    vtype: int, member: str, action: RecoveryAction | None
) -> None:
    def get(handle: Any, ids: list[int]) -> Any:
        assert ids == [230]
        values = (c_nvmlFieldValue_t * 1)()
        values[0].fieldId, values[0].nvmlReturn, values[0].valueType = 230, 0, vtype
        setattr(values[0].value, member, 3)
        return values

    lib = SimpleNamespace(NVMLError=NVMLError, nvmlDeviceGetFieldValues=get)
    assert read_recovery_action(lib, object()) is action
