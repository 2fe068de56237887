"""The thread guard: a thread that raises (anything) or ends before stop is named and
recorded; a one-shot thread may end; stop ends the others cleanly."""

from __future__ import annotations

import threading

from gpudra.common.threads import Threads
from gpudra_testkit.harness.waiting import wait_for


def test_a_thread_that_raises_or_ends_is_recorded_by_name() -> None:
    threads = Threads()
    go = threading.Event()

    def boom() -> None:
        go.wait(5)
        raise SystemExit("a library called exit")

    threads.spawn("boom", boom)
    threads.spawn("quits", lambda: None)
    threads.spawn("once", lambda: None, oneshot=True)
    threads.spawn("steady", threads.stop.wait)
    go.set()
    wait_for("both deaths recorded", lambda: len(threads.dead()) == 2, timeout=5)
    assert threads.dead() == {"boom": "SystemExit: a library called exit", "quits": "ended"}
    threads.join(timeout_s=5)
    assert threads.dead() == {"boom": "SystemExit: a library called exit", "quits": "ended"}
    assert not any(t.name == "steady" and t.is_alive() for t in threading.enumerate())
