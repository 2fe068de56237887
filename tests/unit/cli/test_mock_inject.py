"""``gpudra mock inject``: what it writes is what the mock node's daemons read; the recovery
action goes with an XID or alone, ``--recover`` forgets it, misuse is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.cli.main import main
from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.backend import HealthEventKind
from gpudra.nvml.mock import MockBackend, load_machine


def inject(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> str:
    assert main(["mock", "inject", "--state-file", str(state), *args]) == 0
    return capsys.readouterr().out


def node(state: Path) -> MockBackend:
    return MockBackend(load_machine("dgx-h100"), node_name="n", state_file=state)


def test_an_xid_with_a_recovery_action_then_none_then_recover(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    b = node(state)
    uuid = b.inventory().gpus[2].uuid
    out = inject(capsys, state, "--gpu", "2", "--xid", "79", "--recovery-action", "gpu-reset")
    assert out.strip() == f"{state}: GPU 2: xid 79 (recovery action gpu-reset)"
    ev = b.wait_health_event(1.0)
    assert ev is not None and (ev.kind, ev.xid, ev.gpu_uuid, ev.recovery_action) == (
        HealthEventKind.XID,
        79,
        uuid,
        RecoveryAction.GPU_RESET,
    )
    out = inject(capsys, state, "--gpu", "2", "--recovery-action", "none")
    assert out.strip() == f"{state}: GPU 2: recovery-action none"
    assert b.recovery_action(uuid) is RecoveryAction.NONE
    assert b.wait_health_event(0.01) is None  # alone: no event
    inject(capsys, state, "--gpu", "2", "--recover")
    assert b.recovery_action(uuid) is None
    ev = b.wait_health_event(1.0)
    assert ev is not None and ev.kind is HealthEventKind.RECOVERED


@pytest.mark.parametrize(
    "action", ["none", "gpu-reset", "node-reboot", "drain-p2p", "drain-and-reset"]
)
def test_every_action_nvml_names_can_be_set(
    action: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    inject(capsys, state, "--gpu", "5", "--recovery-action", action)
    assert node(state).recovery_action(node(state).inventory().gpus[5].uuid) == action


def test_an_xid_alone_leaves_the_recovery_action_unset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    assert inject(capsys, state, "--gpu", "0", "--xid", "13").strip().endswith("GPU 0: xid 13")
    ev = node(state).wait_health_event(1.0)
    assert ev is not None and ev.recovery_action is None


MISUSE = {
    "with --lost": (["--lost", "--recovery-action", "none"], "goes with --xid or alone"),
    "with --recover": (["--recover", "--recovery-action", "gpu-reset"], "not --recover"),
    "nothing to inject": ([], "one of the arguments --xid"),
    "an unknown action": (["--recovery-action", "reboot"], "invalid RecoveryAction value"),
    "two faults": (["--xid", "79", "--lost"], "not allowed with argument"),
}


@pytest.mark.parametrize(("args", "message"), MISUSE.values(), ids=MISUSE.keys())
def test_misuse_is_a_usage_error_and_writes_nothing(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    with pytest.raises(SystemExit) as exited:
        main(["mock", "inject", "--state-file", str(state), "--gpu", "1", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not state.exists()
