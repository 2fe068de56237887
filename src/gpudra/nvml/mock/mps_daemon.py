"""A stand-in MPS control daemon for mock mode: a real process with the real one's footprint.

``python -m gpudra.nvml.mock.mps_daemon --pipe-dir D --log-dir L [--active-thread-percentage
N] [--pinned-limit UUID=nM ...]`` writes ``D/control`` (JSON: its pid, the devices it serves
from ``CUDA_VISIBLE_DEVICES`` and the defaults it was given, what the real daemon is told on
its control pipe), logs one line to ``L/control.log`` as the real one does, and sleeps until
SIGTERM.  Tests and mock clusters see a process to adopt, kill and stop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpudra.nvml.mock.mps_daemon")
    p.add_argument("--pipe-dir", type=Path, required=True)
    p.add_argument("--log-dir", type=Path, required=True)
    p.add_argument("--active-thread-percentage", type=int, default=None)
    p.add_argument("--pinned-limit", action="append", default=[])
    args = p.parse_args(argv)

    def stop(_sig: int, _frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    args.pipe_dir.mkdir(parents=True, exist_ok=True)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "pid": os.getpid(),
        "visibleDevices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "activeThreadPercentage": args.active_thread_percentage,
        "pinnedLimits": dict(x.split("=", 1) for x in args.pinned_limit),
    }
    (args.pipe_dir / "control").write_text(json.dumps(settings, indent=1))
    with (args.log_dir / "control.log").open("a") as log:
        log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] mock MPS control daemon started\n")
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
