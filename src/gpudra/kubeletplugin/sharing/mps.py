"""The MPS control daemons of claims: start one, tell whether it still runs, stop it (the IO
edge behind ``NodePlugin``'s MPS life cycle; the only subprocess use of the kubelet plugin).
A plan is one claim's daemon or a GPU's shared one; who starts and stops a shared one is
``effects``' decision, this module only acts on a plan's dirs.

Real mode runs ``nvidia-cuda-mps-control -d`` (found on ``PATH``) with
``CUDA_VISIBLE_DEVICES`` set to the claim's UUIDs and the claim's pipe and log dirs, reads the
daemon's pid from the ``nvidia-cuda-mps-control.pid`` file it writes in its pipe dir, and
sends the claim's defaults on the control program's stdin
(``set_default_active_thread_percentage <n>``, ``set_default_device_pinned_mem_limit <uuid>
<n>M``, what NVIDIA's driver sends); stop sends ``quit``.  Mock mode starts
``gpudra.nvml.mock.mps_daemon``, a real process that records its settings, so everything
above runs the same.

A daemon is known by its pid and its start time (``/proc/<pid>/stat`` field 22, clock ticks
since boot): a pid the kernel reused for another process is never adopted or stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpudra.common.errors import GpudraError
from gpudra.nodestate.checkpoint import MpsPlan, MpsProcess

log = logging.getLogger(__name__)

CONTROL = "nvidia-cuda-mps-control"
PID_FILE = "nvidia-cuda-mps-control.pid"
_WAIT_S = 5.0  # for the daemon's pid file, or for it to exit


class MpsError(GpudraError):
    """An MPS daemon could not be started or stopped; the message says which and why."""


def start_time(pid: int) -> int | None:
    """The process's start time (``/proc/<pid>/stat`` field 22), None when there is no such
    live process (gone, or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 on
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect a stand-in daemon that was our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class MpsControl:
    def __init__(self, *, mock: bool, control: str = CONTROL, wait_s: float = _WAIT_S) -> None:
        self._mock = mock
        self._control = control
        self._wait = wait_s  # for a daemon to exit before it is given up on

    def _env(self, plan: MpsPlan) -> dict[str, str]:
        return {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": ",".join(plan.uuids),
            "CUDA_MPS_PIPE_DIRECTORY": plan.pipe_dir,
            "CUDA_MPS_LOG_DIRECTORY": plan.log_dir,
        }

    def start(self, plan: MpsPlan) -> MpsProcess:
        for d in (plan.pipe_dir, plan.log_dir):
            Path(d).mkdir(parents=True, exist_ok=True)
        pid = self._start_mock(plan) if self._mock else self._start_real(plan)
        started = start_time(pid)
        if started is None:
            raise MpsError(f"the MPS daemon for {plan.pipe_dir} (pid {pid}) exited at start")
        log.info("MPS daemon %d started for %s", pid, ",".join(plan.uuids))
        return MpsProcess(pid=pid, start_time=started)

    def _start_mock(self, plan: MpsPlan) -> int:
        # a dead daemon's file (a shared daemon restarted in its dirs) is no sign of readiness
        (Path(plan.pipe_dir) / "control").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "gpudra.nvml.mock.mps_daemon"]
        argv += ["--pipe-dir", plan.pipe_dir, "--log-dir", plan.log_dir]
        if plan.active_thread_percentage is not None:
            argv += ["--active-thread-percentage", str(plan.active_thread_percentage)]
        for uuid, limit in plan.limits().items():
            argv += ["--pinned-limit", f"{uuid}={limit}"]
        proc = subprocess.Popen(
            argv, env=self._env(plan), start_new_session=True, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _WAIT_S
        while not (Path(plan.pipe_dir) / "control").exists():  # ready: settings recorded
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MpsError(f"the mock MPS daemon for {plan.pipe_dir} did not start")
            time.sleep(0.01)
        return proc.pid

    def _send(self, plan: MpsPlan, command: str) -> None:
        try:
            subprocess.run(
                [self._control],
                input=command + "\n",
                env=self._env(plan),
                check=True,
                capture_output=True,
                text=True,
                timeout=_WAIT_S,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise MpsError(f"{self._control}: {command!r} failed: {e}") from e

    def _start_real(self, plan: MpsPlan) -> int:
        pid_file = Path(plan.pipe_dir) / PID_FILE
        pid_file.unlink(missing_ok=True)
        try:
            subprocess.run([self._control, "-d"], env=self._env(plan), check=True, timeout=_WAIT_S)
        except (OSError, subprocess.SubprocessError) as e:
            raise MpsError(f"{self._control} -d failed: {e}") from e
        deadline = time.monotonic() + _WAIT_S
        while True:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                break
            if time.monotonic() > deadline:
                raise MpsError(f"{self._control} wrote no pid file in {plan.pipe_dir}")
            time.sleep(0.05)
        if plan.active_thread_percentage is not None:
            self._send(
                plan, f"set_default_active_thread_percentage {plan.active_thread_percentage}"
            )
        for uuid, limit in plan.limits().items():
            self._send(plan, f"set_default_device_pinned_mem_limit {uuid} {limit}")
        return pid

    def running(self, plan: MpsPlan) -> MpsProcess | None:
        """The daemon already serving this plan's pipe dir, if one runs: what a node daemon
        killed between starting a daemon and recording it finds there (the real daemon
        writes its pid file into the pipe dir, the stand-in its ``control`` file)."""
        pipe = Path(plan.pipe_dir)
        try:
            if self._mock:
                pid = int(json.loads((pipe / "control").read_text())["pid"])
            else:
                pid = int((pipe / PID_FILE).read_text().strip())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if (b"mps_daemon" if self._mock else b"nvidia-cuda-mps") not in cmdline:
            return None  # the pid was reused by something else
        started = start_time(pid)
        return MpsProcess(pid=pid, start_time=started) if started is not None else None

    def alive(self, proc: MpsProcess) -> bool:
        """The recorded daemon still runs: its pid is live and started when it did."""
        return start_time(proc.pid) == proc.start_time

    def stop(self, plan: MpsPlan, proc: MpsProcess | None) -> None:
        """Stop the plan's daemon (already gone is fine) and remove its dirs."""
        if proc is not None and self.alive(proc):
            quit_ok = False
            if not self._mock:  # the daemon's own way first: it stops its servers too
                with contextlib.suppress(MpsError):
                    self._send(plan, "quit")
                quit_ok = not self._running_after(proc, self._wait)
            if not quit_ok:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                if self._running_after(proc, self._wait):
                    raise MpsError(f"the MPS daemon {proc.pid} for {plan.pipe_dir} did not stop")
            log.info("MPS daemon %d stopped", proc.pid)
        if proc is not None:
            _reap(proc.pid)
        shutil.rmtree(Path(plan.pipe_dir).parent, ignore_errors=True)

    def _running_after(self, proc: MpsProcess, seconds: float) -> bool:
        """Wait up to ``seconds`` for the daemon to exit; True if it still runs."""
        deadline = time.monotonic() + seconds
        while True:
            _reap(proc.pid)
            if not self.alive(proc):
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.02)
