"""The controller's main loop: lead (when elected), reconcile on every change, back off on
API errors.

Kept out of the CLI so its timing decisions are testable: passes run only while this replica
leads; a pass that fails on the API waits as ``Backoff`` says (the server's Retry-After
included), never hot-looping; a pass cut short because leadership was lost just stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gpudra.controller.backoff import Backoff
from gpudra.controller.reconciler import NotLeader, Reconciler
from gpudra.kube.errors import KubeError

log = logging.getLogger(__name__)


def run_loop(
    reconciler: Reconciler,
    stop: threading.Event,
    *,
    interval_s: float,
    leading: Callable[[], bool] = lambda: True,
    lost: threading.Event | None = None,
    backoff: Backoff | None = None,
    once: bool = False,
    wait: Callable[[float], object] | None = None,
    changed: threading.Event | None = None,
) -> int:
    """Run until ``stop`` (0) or until leadership is lost (1: exit so a standby takes over).
    With ``changed`` (set by the watch-fed cache on any change) the next pass starts as soon
    as something changed, and at the latest after ``interval_s``."""
    backoff = backoff or Backoff()
    pause = wait or stop.wait

    def idle(seconds: float) -> None:
        if changed is None:
            pause(seconds)
            return
        changed.wait(seconds)
        changed.clear()  # before the pass: a change during it wakes the next one

    while not stop.is_set():
        if lost is not None and lost.is_set():
            log.error("lost leadership; exiting so a standby takes over")
            return 1
        if not leading():
            pause(0.2)
            continue
        try:
            counts = reconciler.run_pass()
        except NotLeader as e:
            log.warning("pass stopped: %s", e)
            continue
        except KubeError as e:
            delay = backoff.failed(e)
            log.warning("pass failed (%s); next pass in %.1fs", e, delay)
            pause(delay)
            continue
        backoff.succeeded()
        if counts:
            log.info("pass: %s", counts)
        if once:
            break
        idle(interval_s)
    return 0
