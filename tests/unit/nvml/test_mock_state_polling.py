"""The mock's state file under polling: an idle health-event wait reads the file and writes
nothing (it polls 20 times a second for a node daemon's whole life), and a change made by
another process (a fault injected from outside) is still seen at once."""

from __future__ import annotations

from pathlib import Path

from gpudra.nvml.mock import MockBackend, load_machine


def test_an_idle_event_wait_writes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    backend = MockBackend(load_machine("dgx-h100"), node_name="n", state_file=state)
    backend.inject_xid(1, 13)  # the file exists, and one event is pending
    assert backend.wait_health_event(0.5) is not None
    before = state.stat()
    assert backend.wait_health_event(0.3) is None  # about six polls, nothing pending
    after = state.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_change_from_another_process_is_seen_by_the_next_poll(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    waiting = MockBackend(load_machine("dgx-h100"), node_name="n", state_file=state)
    injector = MockBackend(load_machine("dgx-h100"), node_name="n", state_file=state)
    assert waiting.wait_health_event(0.1) is None  # parsed and remembered
    injector.inject_xid(4, 79)
    ev = waiting.wait_health_event(1.0)
    assert ev is not None and ev.xid == 79
    assert ev.gpu_uuid == waiting.inventory().gpus[4].uuid
