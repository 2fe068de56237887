"""Is a node daemon working?  The answer behind ``/healthz`` (and ``/readyz``).

Every long-lived thread of a node daemon (the GPU watch's two, the slice publisher and its
watch, checkpoint garbage collection, Node Events, the kubelet watch) is started by
``threads.spawn`` (``gpudra.common.threads``): one that dies fails liveness here.

Unhealthy (``live``): a guarded thread has ended; the API server has not answered for longer
than ``api_unreachable_s`` (only for a daemon that talks to it); NVML has not completed a
call for longer than ``nvml_wedged_s`` (a call that hangs, or one that keeps failing).
``ready`` also needs the kubelet's registration.  These are the daemon's own health, not the
GPUs': a GPU's faults are ``gpudra.nodeagent.faults``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpudra.common.threads import Threads


@dataclass(frozen=True)
class LivenessVerdict:
    ok: bool
    problems: tuple[str, ...]

    def text(self) -> str:
        return "ok\n" if self.ok else "".join(f"{p}\n" for p in self.problems)


class Liveness:
    def __init__(
        self,
        *,
        nvml_wedged_s: float,
        api_unreachable_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threads = Threads()
        self.stop = self.threads.stop
        self._clock = clock
        self._api_limit = api_unreachable_s
        self._nvml_limit = nvml_wedged_s
        self._lock = threading.Lock()
        now = clock()
        self._api_ok_at = now
        self._api_error = ""
        self._nvml_ok_at = now
        self._nvml_error = ""
        self._registered = False

    # --- reports ----------------------------------------------------------------------------

    def thread_died(self, name: str, why: str) -> None:
        self.threads.died(name, why)

    def api_ok(self) -> None:
        with self._lock:
            self._api_ok_at, self._api_error = self._clock(), ""

    def api_failed(self, error: str) -> None:
        with self._lock:
            self._api_error = error

    def api_answered(self, error: str) -> None:
        """The API server answered (``error`` empty) or failed with ``error``."""
        if error:
            self.api_failed(error)
        else:
            self.api_ok()

    def nvml_ok(self) -> None:
        with self._lock:
            self._nvml_ok_at, self._nvml_error = self._clock(), ""

    def nvml_failed(self, error: str) -> None:
        with self._lock:
            self._nvml_error = error

    def registered(self, yes: bool) -> None:
        with self._lock:
            self._registered = yes

    # --- verdicts ---------------------------------------------------------------------------

    def live(self) -> LivenessVerdict:
        with self._lock:
            now = self._clock()
            dead = self.threads.dead()
            problems = [f"thread {n} died: {why}" for n, why in sorted(dead.items())]
            api_for = now - self._api_ok_at
            if self._api_limit is not None and api_for > self._api_limit:
                problems.append(
                    f"the API server has not answered for {api_for:.0f}s (limit "
                    f"{self._api_limit:.0f}s): {self._api_error or 'no answer yet'}"
                )
            nvml_for = now - self._nvml_ok_at
            if nvml_for > self._nvml_limit:
                problems.append(
                    f"NVML has not completed a call for {nvml_for:.0f}s (limit "
                    f"{self._nvml_limit:.0f}s): "
                    f"{self._nvml_error or 'a call is hanging (wedged driver?)'}"
                )
            return LivenessVerdict(ok=not problems, problems=tuple(problems))

    def ready(self) -> LivenessVerdict:
        live = self.live()
        with self._lock:
            registered = self._registered
        if registered:
            return live
        return LivenessVerdict(
            ok=False, problems=(*live.problems, "the kubelet has not registered the driver")
        )
