"""One node daemon per plugin directory: an exclusive lock file held for the daemon's life.

Two daemons on one plugin dir would unlink each other's sockets and both write the
checkpoint.  The second one to start finds the lock held and stops with a message naming the
holder.  The lock is a ``flock``: the kernel drops it when the holder dies, even by SIGKILL,
so a crashed daemon never blocks its successor.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DirLocked(Exception):
    """Another daemon holds the plugin directory; the message says which."""


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "daemon.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise DirLocked(
                f"another gpudra node daemon (pid {holder}) is running on plugin directory "
                f"{self.path.parent} (lock {self.path}); one daemon per node and plugin "
                "directory: stop the other one or choose another --plugin-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
