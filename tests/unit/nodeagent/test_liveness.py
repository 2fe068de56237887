"""A node daemon's liveness verdict over an injected clock, and the thread guard."""

from __future__ import annotations

from gpudra.nodeagent.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_reason_fails_liveness_until_it_is_cleared() -> None:
    clock = Clock()
    h = Liveness(api_unreachable_s=60, nvml_wedged_s=30, clock=clock)
    assert h.live().ok and h.live().text() == "ok\n"

    h.api_failed("connection refused")
    clock.now += 59  # failing, but not for long enough
    h.nvml_ok()
    assert h.live().ok
    clock.now += 2
    (problem,) = h.live().problems
    assert "API server has not answered for 61s" in problem and "connection refused" in problem
    h.api_ok()
    assert h.live().ok

    clock.now += 31  # no NVML call completed since
    (problem,) = h.live().problems
    assert "NVML has not completed a call for 33s" in problem and "hanging" in problem
    h.nvml_ok()
    h.thread_died("slice-publisher", "RuntimeError: boom")
    assert h.live().problems == ("thread slice-publisher died: RuntimeError: boom",)


def test_ready_also_needs_the_kubelet_registration() -> None:
    h = Liveness(api_unreachable_s=60, nvml_wedged_s=30, clock=Clock())
    assert not h.ready().ok
    assert "has not registered" in h.ready().text()
    h.registered(True)
    assert h.ready().ok
