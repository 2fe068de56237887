"""Named points between the node daemon's durable steps, where a test can make it die.

The crash suite proves that every window between two side effects of prepare and unprepare
(checkpoint record, MIG create/destroy, CDI spec) is repaired by the kubelet's retry.  Random
kills from outside rarely land in a window a few microseconds wide, so the daemon can kill
itself there: ``GPUDRA_CRASH_AT=<point>:<n>`` SIGKILLs the process at the n-th time it passes
``<point>`` (after saying so on stderr).  Unset, as in production, a crash point does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "GPUDRA_CRASH_AT"

POINTS = (
    "prepare:preparing-recorded",
    "prepare:mig-created",
    "prepare:mig-recorded",
    "prepare:cdi-written",
    "prepare:prepared-recorded",
    "unprepare:mig-destroyed",
    "unprepare:cdi-removed",
    "unprepare:entry-removed",
)


def _parse(value: str) -> tuple[str, int] | None:
    point, _, count = value.rpartition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        print(
            f"gpudra: ignoring {ENV}={value!r}: expected <point>:<n> with n >= 1 and point one "
            f"of {', '.join(POINTS)}",
            file=sys.stderr,
        )
        return None
    return point, int(count)


_target = _parse(os.environ[ENV]) if os.environ.get(ENV) else None
_hits = [0]
_lock = threading.Lock()


def crashpoint(point: str) -> None:
    """Die here if this is the configured point and hit (no-op otherwise)."""
    if _target is None or _target[0] != point:
        return
    with _lock:
        _hits[0] += 1
        if _hits[0] < _target[1]:
            return
        print(f"gpudra crashpoint {point}: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
