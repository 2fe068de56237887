"""GPU faults: the classification of every XID gpudra names, taints, damped recovery, and
the per-device taint limit."""

from __future__ import annotations

import pytest

from gpudra.devices.faults import (
    APPLICATION_XIDS,
    XID_NAMES,
    Fault,
    FaultKind,
    GpuFaults,
    fault_taints,
    is_fatal,
)

# NVIDIA's classification of the XIDs gpudra names: the application's (ignored by NVIDIA's
# device plugin and DRA driver) or the GPU's
NOT_THE_GPUS = {13, 31, 43, 45, 68, 109}


@pytest.mark.parametrize("xid", sorted(XID_NAMES))
def test_every_named_xid_is_classified_as_nvidia_does(xid: int) -> None:
    assert is_fatal(FaultKind.XID, xid) is (xid not in NOT_THE_GPUS)


def test_the_ignore_list_is_nvidias_and_every_entry_is_named() -> None:
    assert APPLICATION_XIDS == NOT_THE_GPUS and set(XID_NAMES) >= APPLICATION_XIDS
    assert is_fatal(FaultKind.XID, 999)  # unknown XIDs are the GPU's: fail safe
    assert is_fatal(FaultKind.ECC_DOUBLE_BIT) and is_fatal(FaultKind.LOST)
    assert not is_fatal(FaultKind.ECC_SINGLE_BIT)


def test_taints_have_stable_keys_effects_and_time() -> None:
    at = 1764590400.7  # 2025-12-01T12:00:00Z
    assert Fault(FaultKind.XID, at, 79).taint() == {
        "key": "gpu.gpudra.io/xid",
        "value": "79",
        "effect": "NoSchedule",
        "timeAdded": "2025-12-01T12:00:00Z",
    }
    assert Fault(FaultKind.XID, at, 13).taint()["effect"] == "None"
    assert Fault(FaultKind.LOST, at).taint() == {
        "key": "gpu.gpudra.io/gpu-lost",
        "value": "true",
        "effect": "NoExecute",
        "timeAdded": "2025-12-01T12:00:00Z",
    }
    assert Fault(FaultKind.LOST, at).taint(lost_effect="NoSchedule")["effect"] == "NoSchedule"
    assert Fault(FaultKind.ECC_DOUBLE_BIT, at).taint()["key"] == "gpu.gpudra.io/ecc"
    assert Fault(FaultKind.ECC_SINGLE_BIT, at).taint()["value"] == "single-bit"


def test_recovery_is_damped_and_a_new_fault_restarts_it() -> None:
    f = GpuFaults(recovery_s=10)
    assert f.report("G", FaultKind.XID, 100, 79)
    assert not f.report("G", FaultKind.XID, 101, 79)  # the same fault again: nothing new
    assert f.current(105)["G"][0].since == 100
    assert f.recover("G", 110) and not f.recover("G", 111)
    assert f.next_change() == 120
    assert "G" in f.current(119)
    assert f.report("G", FaultKind.XID, 115, 79)  # flaps inside the window
    assert f.next_change() is None and "G" in f.current(500)
    f.recover("G", 500)
    assert f.current(510) == {} and f.next_change() is None


def test_fatal_taints_come_first_and_none_only_where_the_server_has_it() -> None:
    faults = (Fault(FaultKind.XID, 1, 13), Fault(FaultKind.XID, 1, 79))
    both = fault_taints(faults, lost_effect="NoExecute", effect_none=True, room=15)
    assert [(t["value"], t["effect"]) for t in both] == [("79", "NoSchedule"), ("13", "None")]
    old = fault_taints(faults, lost_effect="NoExecute", effect_none=False, room=3)
    assert [t["value"] for t in old] == ["79"]
    assert fault_taints(faults, lost_effect="NoExecute", effect_none=True, room=1) == both[:1]
