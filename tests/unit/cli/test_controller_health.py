"""The controller's /healthz: ok while its watches and leader thread run, and naming the
thread that died (every long-lived thread is guarded by gpudra.common.threads)."""

from __future__ import annotations

from gpudra.cli.controller import _healthz
from gpudra.common.threads import Threads
from gpudra_testkit.harness.waiting import wait_for


def test_the_controllers_healthz_names_a_dead_watch() -> None:
    threads = Threads()
    threads.spawn("watch-pods", threads.stop.wait)
    assert _healthz(threads) == (True, "ok\n")
    threads.spawn("watch-nodes", lambda: None)  # a watch that ended
    wait_for("the death recorded", lambda: bool(threads.dead()), timeout=5)
    assert _healthz(threads) == (False, "thread watch-nodes died: ended\n")
    threads.join()
