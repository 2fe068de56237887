"""Start and stop the control-plane processes so that none outlives its owner.

Each component runs in its own session (so its whole process group can be signalled) with
stdout/stderr in a log file.  An attached component also gets ``PR_SET_PDEATHSIG=SIGKILL``: if
the Python process that started it dies, even by SIGKILL, the kernel kills the component.
A detached one (``localcluster up``) survives its starter and is stopped later by pid; the
recorded start time guards against signalling a recycled pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn that makes the kernel SIGKILL the child when ``parent_pid`` dies.

    It only calls the already-resolved ``prctl`` and ``getppid``, which take no locks, so it is
    safe to run in the forked child even when the parent has other threads."""
    prctl = _libc.prctl

    def preexec() -> None:  # runs in the child between fork and exec
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(127)

    return preexec


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` is alive (not a zombie) and, if given, still the process that started at
    ``started``."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def _signal_group(pid: int, sig: signal.Signals, *, leader_checked: bool) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # Not a group leader: signal the process itself, but only if the caller has just
        # checked that ``pid`` is still ours (never a recycled pid).
        if leader_checked:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    except PermissionError:
        pass


def _gone(pid: int, started: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def terminate(pids: Mapping[int, int | None], *, grace: float = 5.0) -> list[int]:
    """Stop each process group ``pid`` (whose leader started at the given time), one after the
    other in the given order (dependents first: the apiserver shuts down in about a second
    while etcd is up, but hangs until killed without it): SIGTERM, then SIGKILL after
    ``grace`` seconds.  Returns the pids still alive afterwards (should be none)."""
    left = []
    for pid, started in pids.items():
        if not is_running(pid, started):
            continue
        _signal_group(pid, signal.SIGTERM, leader_checked=True)
        if not _gone(pid, started, grace):
            _signal_group(pid, signal.SIGKILL, leader_checked=is_running(pid, started))
            if not _gone(pid, started, 5.0):
                left.append(pid)
        _signal_group(pid, signal.SIGKILL, leader_checked=False)  # the rest of its group
    return left


class Component:
    """One control-plane program: its command line, log file and (once started) process."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        detach: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.detach = detach
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at: int | None = None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"# {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if self.detach else _die_with(os.getpid()),  # noqa: PLW1509
                env=self.env,
                close_fds=True,
            )
        self.started_at = start_time(self.popen.pid)

    def exit_code(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return None if self.popen is None else self.popen.poll()

    def stop(self, *, grace: float = 5.0) -> bool:
        """Stop the process group; True when nothing of it is left."""
        if self.popen is None:
            return True
        left = terminate({self.popen.pid: self.started_at}, grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1.0)  # reap the zombie
        return not left

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
