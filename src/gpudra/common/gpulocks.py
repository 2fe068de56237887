"""One mode per GPU: the DRA plugin and the device plugin lock each GPU they serve.

A GPU may be served by ``gpudra kubelet-plugin`` (DRA) or by ``gpudra device-plugin``, never
both: two schedulers would hand it out twice.  Each daemon takes an exclusive ``flock`` on
``<lock dir>/<GPU UUID>.lock`` for every GPU in its GPU set before it serves any, and stops
with a message naming the GPU, the other daemon and its pid if one is held.  Locks are held
for the daemon's life and dropped by the kernel when it dies (even by SIGKILL), so a crash
never blocks a restart.  Both daemons default to ``<kubelet dir>/gpudra/gpus``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO


class GpuLocked(Exception):
    """A GPU of this daemon's set is served by another daemon; the message says which."""


class GpuLocks:
    def __init__(self, lock_dir: Path, *, holder: str, setting: str) -> None:
        """``holder``: this daemon's name in messages (``kubelet-plugin``); ``setting``: the
        setting that chooses its GPUs (``--gpus``), for the advice in the error."""
        self.lock_dir = lock_dir
        self._holder = holder
        self._setting = setting
        self._files: list[IO[str]] = []

    def acquire(self, gpus: Iterable[tuple[int, str]]) -> None:
        """Lock every (index, UUID); on any conflict, release what was taken and raise
        GpuLocked naming every GPU held elsewhere."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        held: list[str] = []
        for index, uuid in gpus:
            f = (self.lock_dir / f"{uuid}.lock").open("a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                who = f.read().strip() or "another gpudra daemon"
                f.close()
                held.append(f"GPU {index} ({uuid}) is served by {who}")
                continue
            f.seek(0)
            f.truncate()
            f.write(f"gpudra {self._holder} (pid {os.getpid()})\n")
            f.flush()
            self._files.append(f)
        if held:
            self.release()
            raise GpuLocked(
                f"{'; '.join(held)}: a GPU is served by the DRA plugin or the device plugin, "
                f"never both; give this {self._holder} a {self._setting} that excludes "
                f"{'it' if len(held) == 1 else 'them'} (locks in {self.lock_dir})"
            )

    def release(self) -> None:
        for f in self._files:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        self._files = []
