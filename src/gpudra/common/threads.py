"""Every long-lived thread of a gpudra process, started guarded: one place that names, logs
and flags a thread that must not end.

A thread started with ``Threads.spawn`` runs until ``stop`` is set (a ``oneshot`` one until
its work is done).  If it raises anything (``BaseException`` included: a ``SystemExit`` from
a library is still a dead thread) or a thread that must run returns before ``stop``, that is
logged with its name and recorded in ``dead()``, which the
process's liveness reads (``gpudra.nodeagent.liveness`` for the node daemons, the
controller's ``/healthz``), as kopf's ``aiotasks.guard`` does for its tasks.  Stdlib only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Threads:
    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._dead: dict[str, str] = {}
        self._threads: list[threading.Thread] = []

    def spawn(
        self,
        name: str,
        target: Callable[..., None],
        *args: Any,
        oneshot: bool = False,
        joined: bool = True,
    ) -> threading.Thread:
        """Run ``target(*args)`` on a daemon thread named ``name`` that must run until
        ``stop`` (``oneshot``: until it returns): if it raises, or returns before ``stop``
        without being ``oneshot``, that is logged and recorded.  ``joined=False``: ``join``
        does not wait for it (a thread blocked in a call that ``stop`` cannot interrupt,
        such as a watch's long poll, which ends with the process)."""

        def guarded() -> None:
            try:
                target(*args)
            except BaseException as e:
                log.exception("thread %s died", name)
                self.died(name, f"{type(e).__name__}: {e}")
                return
            if not (oneshot or self.stop.is_set()):
                log.error("thread %s ended", name)
                self.died(name, "ended")

        t = threading.Thread(target=guarded, name=name, daemon=True)
        if joined:
            with self._lock:
                self._threads.append(t)
        t.start()
        return t

    def died(self, name: str, why: str) -> None:
        with self._lock:
            self._dead[name] = why

    def dead(self) -> dict[str, str]:
        """Name -> why, for each guarded thread that ended before ``stop``."""
        with self._lock:
            return dict(self._dead)

    def join(self, timeout_s: float = 5.0) -> None:
        """Set ``stop`` and wait for every joined thread (each up to ``timeout_s``)."""
        self.stop.set()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout=timeout_s)
