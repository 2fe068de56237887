"""The controller loop's timing: back off on API errors as the server asks, never hot-loop,
stop when leadership is lost."""

from __future__ import annotations

import threading
from typing import Any

from gpudra.controller.backoff import Backoff
from gpudra.controller.loop import run_loop
from gpudra.controller.reconciler import NotLeader
from gpudra.kube.errors import KubeError, ServerError, TooManyRequests


class Script:
    """A reconciler whose passes raise or return what the script says, then stop the loop."""

    def __init__(self, stop: threading.Event, outcomes: list[Any]) -> None:
        self.stop, self.outcomes, self.passes = stop, outcomes, 0

    def run_pass(self) -> dict[str, int]:
        self.passes += 1
        if not self.outcomes:
            self.stop.set()
            return {}
        out = self.outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return dict(out)


def test_api_errors_back_off_exponentially_and_honour_retry_after() -> None:
    stop = threading.Event()
    waits: list[float] = []
    script = Script(
        stop,
        [
            ServerError("etcd down"),
            ServerError("etcd down"),
            TooManyRequests("throttled", retry_after=7.0),
            KubeError("refused"),
            {"allocate": 1},
            ServerError("again"),
        ],
    )
    rc = run_loop(
        script,  # type: ignore[arg-type]
        stop,
        interval_s=1.0,
        backoff=Backoff(initial_s=0.5, max_s=30),
        wait=waits.append,
    )
    assert rc == 0
    # 0.5, 1, the server's 7 s, 4 (exponential), a success (interval), reset: 0.5, interval
    assert waits == [0.5, 1.0, 7.0, 4.0, 1.0, 0.5, 1.0]


def test_retry_after_is_capped_and_never_shorter_than_our_own_back_off() -> None:
    b = Backoff(initial_s=2, max_s=30, max_retry_after_s=60)
    assert b.failed(TooManyRequests("x", retry_after=0.1)) == 2.0
    assert b.failed(TooManyRequests("x", retry_after=86400)) == 60.0


def test_a_pass_cut_short_by_lost_leadership_then_exit() -> None:
    stop, lost = threading.Event(), threading.Event()
    script = Script(stop, [NotLeader("renew deadline passed")])
    waits: list[float] = []

    def wait(s: float) -> None:
        waits.append(s)
        lost.set()

    script.outcomes.append({})
    rc = run_loop(script, stop, interval_s=1.0, lost=lost, wait=wait)  # type: ignore[arg-type]
    assert rc == 1 and script.passes == 2
