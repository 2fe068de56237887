"""Exclusive file locks held for a daemon's life: the one lock helper of both node daemons.

Two locks use it:

* ``DirLock``, one node daemon per plugin directory: two daemons on one directory would
  unlink each other's sockets and both write the checkpoint;
* ``GpuLocks``, one mode per GPU: a GPU is served by ``gpudra kubelet-plugin`` (DRA) or by
  ``gpudra device-plugin``, never both (two schedulers would hand it out twice).  Each daemon
  locks ``<lock dir>/<GPU UUID>.lock`` for every GPU of its set before it serves any.

Every lock is an exclusive ``flock`` on a file that names its holder: the second taker
stops with a message naming the holder and its pid, and the kernel drops the lock when the
holder dies (even by SIGKILL), so a crash never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from gpudra.catalogue.gpuset import GpuSet
from gpudra.common.errors import GpudraError
from gpudra.devices.inventory import Inventory


class DirLocked(GpudraError):
    """Another daemon holds the plugin directory; the message says which."""


class GpuLocked(GpudraError):
    """A GPU of this daemon's set is served by another daemon; the message says which."""


def take(path: Path, holder: str) -> IO[str] | str:
    """Lock ``path`` exclusively and write ``holder`` into it: the open file (keep it to
    hold the lock), or, when someone else holds it, what that holder wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        other = f.read().strip()
        f.close()
        return other
    f.seek(0)
    f.truncate()
    f.write(f"{holder}\n")
    f.flush()
    return f


def drop(f: IO[str]) -> None:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "daemon.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        got = take(self.path, str(os.getpid()))
        if isinstance(got, str):
            raise DirLocked(
                f"another gpudra node daemon (pid {got or 'unknown'}) is running on plugin "
                f"directory {self.path.parent} (lock {self.path}); one daemon per node and "
                "plugin directory: stop the other one or choose another --plugin-dir"
            )
        self._file = got

    def release(self) -> None:
        if self._file is not None:
            drop(self._file)
            self._file = None


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
        me = f"gpudra {self._holder} (pid {os.getpid()})"
        for index, uuid in gpus:
            got = take(self.lock_dir / f"{uuid}.lock", me)
            if isinstance(got, str):
                held.append(f"GPU {index} ({uuid}) is served by {got or 'another gpudra daemon'}")
            else:
                self._files.append(got)
        if held:
            self.release()
            raise GpuLocked(
                f"{'; '.join(held)}: a GPU is served by the DRA plugin or the device plugin, "
                f"never both; give this {self._holder} a {self._setting} that excludes "
                f"{'it' if len(held) == 1 else 'them'} (locks in {self.lock_dir})"
            )

    def release(self) -> None:
        for f in self._files:
            drop(f)
        self._files = []


def lock_served(
    lock_dir: Path, inv: Inventory, served: GpuSet, *, holder: str, setting: str = "--gpus"
) -> GpuLocks:
    """Lock the GPUs of ``inv`` in ``served`` for a daemon called ``holder``; the locks held
    (``GpuLocked`` if another daemon serves one of them)."""
    locks = GpuLocks(lock_dir, holder=holder, setting=setting)
    index = served.resolve(len(inv.gpus))
    locks.acquire((g.index, g.uuid) for g in inv.gpus if g.index in index)
    return locks
