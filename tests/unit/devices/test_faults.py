"""GPU faults: the classification of every XID gpudra names (by NVML's recovery action, or
the ignore list without one), taints, damped recovery (also by the recovery action reading
NONE again), and the per-device taint limit."""

from __future__ import annotations

import pytest

from gpudra.devices.faults import (
    APPLICATION_XIDS,
    XID_NAMES,
    Fault,
    FaultKind,
    GpuFaults,
    RecoveryAction,
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


@pytest.mark.parametrize("action", list(RecoveryAction))
@pytest.mark.parametrize("xid", sorted(XID_NAMES))
def test_with_a_recovery_action_nvml_decides_for_every_named_xid(
    xid: int, action: RecoveryAction
) -> None:
    fatal = action is not RecoveryAction.NONE  # the ignore list no longer matters
    assert is_fatal(FaultKind.XID, xid, action) is fatal
    fault = Fault(FaultKind.XID, 1764590400, xid, action)
    assert fault.fatal is fatal
    assert fault.taint() == {
        "key": "gpu.gpudra.io/xid",
        "value": str(xid),
        "effect": "NoSchedule" if fatal else "None",
        "timeAdded": "2025-12-01T12:00:00Z",
    }


@pytest.mark.parametrize("xid", sorted(XID_NAMES))
def test_without_a_recovery_action_the_ignore_list_decides(xid: int) -> None:
    assert Fault(FaultKind.XID, 1, xid, None).fatal is (xid not in NOT_THE_GPUS)


DESCRIBED = {
    "no action known": (None, "XID 79 (GPU has fallen off the bus)"),
    "none": (RecoveryAction.NONE, "XID 79 (GPU has fallen off the bus); NVML: no recovery"),
    "reset": (RecoveryAction.GPU_RESET, "XID 79 (GPU has fallen off the bus); NVML: needs a GPU"),
    "reboot": (RecoveryAction.NODE_REBOOT, "NVML: needs a node reboot"),
    "p2p": (RecoveryAction.DRAIN_P2P, "NVML: needs its peer-to-peer traffic drained"),
    "drain+reset": (RecoveryAction.DRAIN_AND_RESET, "NVML: needs peer-to-peer drained and a"),
    "newer": (RecoveryAction.OTHER, "NVML: needs a recovery action this gpudra does not know"),
}


@pytest.mark.parametrize(("action", "text"), DESCRIBED.values(), ids=DESCRIBED.keys())
def test_describe_says_the_recovery_action(action: RecoveryAction | None, text: str) -> None:
    said = Fault(FaultKind.XID, 1, 79, action).describe()
    assert text in said and (action is not None or "NVML" not in said)


def test_a_recovery_action_of_none_ends_the_xid_faults_after_damping_not_before() -> None:
    f = GpuFaults(recovery_s=10)
    f.report("G", FaultKind.XID, 100, 79, RecoveryAction.GPU_RESET)
    f.report("G", FaultKind.ECC_DOUBLE_BIT, 100)
    f.report("H", FaultKind.XID, 100, 79, RecoveryAction.GPU_RESET)
    assert sorted(f.xid_gpus()) == ["G", "H"]
    assert not f.recovery_action("G", RecoveryAction.GPU_RESET, 105)  # still needed: as is
    assert f.recovery_action("G", RecoveryAction.NONE, 110)
    assert not f.recovery_action("G", RecoveryAction.NONE, 112)  # already ending: from 110
    assert f.next_change() == 120
    assert {x.kind for x in f.current(119.9)["G"]} == {FaultKind.XID, FaultKind.ECC_DOUBLE_BIT}
    assert [x.kind for x in f.current(120)["G"]] == [FaultKind.ECC_DOUBLE_BIT]  # it stays
    assert [x.xid for x in f.current(120)["H"]] == [79]  # another GPU's XID is its own
    assert f.next_change() is None and f.xid_gpus() == ["H"]


def test_an_action_again_or_a_new_xid_in_the_window_keeps_the_xid_faults() -> None:
    f = GpuFaults(recovery_s=10)
    f.report("G", FaultKind.XID, 100, 79, RecoveryAction.GPU_RESET)
    f.recovery_action("G", RecoveryAction.NONE, 110)
    assert f.recovery_action("G", RecoveryAction.NODE_REBOOT, 115)  # flaps: called off
    assert f.next_change() is None and "G" in f.current(500)
    (fault,) = f.current(500)["G"]
    assert (fault.since, fault.recovery_action) == (100, RecoveryAction.NODE_REBOOT)
    f.recovery_action("G", RecoveryAction.NONE, 500)
    assert f.report("G", FaultKind.XID, 505, 79, RecoveryAction.NONE)  # a new XID: fresh
    assert f.next_change() is None and "G" in f.current(600)
    f.recovery_action("G", RecoveryAction.NONE, 600)
    assert f.current(610) == {}


def test_a_recovery_action_tightens_at_once_and_a_report_updates_it() -> None:
    f = GpuFaults(recovery_s=10)
    f.report("G", FaultKind.XID, 100, 13, RecoveryAction.NONE)
    assert not f.current(100)["G"][0].fatal  # NVML: nothing to do
    assert f.recovery_action("G", RecoveryAction.GPU_RESET, 101)
    assert f.current(101)["G"][0].fatal  # now it says a reset: fatal without waiting
    assert f.report("G", FaultKind.XID, 102, 13, RecoveryAction.DRAIN_P2P)  # changed: news
    assert not f.report("G", FaultKind.XID, 103, 13, None)  # not read: the known one stays
    (fault,) = f.current(103)["G"]
    assert (fault.since, fault.recovery_action) == (100, RecoveryAction.DRAIN_P2P)


def test_a_recovery_action_changes_nothing_without_xid_faults_or_while_recovering() -> None:
    f = GpuFaults(recovery_s=10)
    assert not f.recovery_action("nobody", RecoveryAction.NONE, 100)
    f.report("E", FaultKind.ECC_DOUBLE_BIT, 100)
    assert not f.recovery_action("E", RecoveryAction.NONE, 100)  # not an XID: stays
    assert not f.recovery_action("E", RecoveryAction.GPU_RESET, 100)
    f.report("G", FaultKind.XID, 100, 79)
    f.recover("G", 105)  # the GPU recovered as a whole: its window, not the action's
    assert f.xid_gpus() == [] and not f.recovery_action("G", RecoveryAction.NONE, 106)
    assert f.next_change() == 115 and "E" in f.current(200) and "G" not in f.current(200)
