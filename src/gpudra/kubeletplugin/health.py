"""Is the node daemon working?  The answer behind ``/healthz`` and ``/readyz``.

The daemon is unhealthy when a background thread has died (slice publisher, health events,
garbage collection, NVML probe), when the API server has not answered for longer than
``api_unreachable_s``, or when NVML has not completed a call for longer than
``nvml_wedged_s`` (a call that hangs, or one that keeps failing).  Ready additionally needs
the kubelet to have registered the driver.  Pure state and a clock: the daemon reports into
it, the HTTP endpoint reads it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...]

    def text(self) -> str:
        return "ok\n" if self.ok else "".join(f"{p}\n" for p in self.problems)


class HealthState:
    def __init__(
        self,
        *,
        api_unreachable_s: float,
        nvml_wedged_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._api_limit = api_unreachable_s
        self._nvml_limit = nvml_wedged_s
        self._lock = threading.Lock()
        now = clock()
        self._dead: dict[str, str] = {}
        self._api_ok_at = now
        self._api_error = ""
        self._nvml_ok_at = now
        self._nvml_error = ""
        self._registered = False

    def thread_died(self, name: str, why: str) -> None:
        with self._lock:
            self._dead[name] = why

    def api_ok(self) -> None:
        with self._lock:
            self._api_ok_at, self._api_error = self._clock(), ""

    def api_failed(self, error: str) -> None:
        with self._lock:
            self._api_error = error

    def nvml_ok(self) -> None:
        with self._lock:
            self._nvml_ok_at, self._nvml_error = self._clock(), ""

    def nvml_failed(self, error: str) -> None:
        with self._lock:
            self._nvml_error = error

    def registered(self, yes: bool) -> None:
        with self._lock:
            self._registered = yes

    def live(self) -> Verdict:
        with self._lock:
            now = self._clock()
            problems = [f"thread {n} died: {why}" for n, why in sorted(self._dead.items())]
            api_for = now - self._api_ok_at
            if api_for > self._api_limit:
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
            return Verdict(ok=not problems, problems=tuple(problems))

    def ready(self) -> Verdict:
        live = self.live()
        with self._lock:
            registered = self._registered
        if registered:
            return live
        return Verdict(
            ok=False, problems=(*live.problems, "the kubelet has not registered the driver")
        )
