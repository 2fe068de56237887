"""Process ownership: components stop with their group, and die with a SIGKILLed parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gpudra_testkit.localcluster.pki import generate
from gpudra_testkit.localcluster.process import Component, is_running, start_time, terminate


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if is_running(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if is_running(p)]


def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    # A shell that ignores SIGTERM and has a child: only the group SIGKILL ends both.
    script = f"trap '' TERM; sleep 300 & echo $! > {tmp_path}/child.pid; wait"
    c = Component("sh", ["sh", "-c", script], tmp_path / "logs" / "sh.log")
    c.start()
    deadline = time.monotonic() + 5
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int((tmp_path / "child.pid").read_text())
    assert is_running(c.pid) and is_running(child)
    assert c.stop(grace=0.3)
    assert _wait_gone([c.pid, child]) == []
    assert c.log_tail().startswith("# sh -c")


def test_exit_code_and_log_tail(tmp_path: Path) -> None:
    c = Component("fail", ["sh", "-c", "echo boom; exit 3"], tmp_path / "fail.log")
    c.start()
    assert c.popen is not None
    c.popen.wait(timeout=10)
    assert c.exit_code() == 3
    assert c.log_tail().splitlines()[-1] == "boom"
    assert c.stop()


def test_start_time_guards_against_pid_reuse() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started = start_time(proc.pid)
        assert started is not None
        assert is_running(proc.pid, started)
        assert not is_running(proc.pid, started + 1)
        # A wrong start time means "not ours": terminate must leave it alone.
        assert terminate({proc.pid: started + 1}, grace=0.1) == []
        assert proc.poll() is None
        assert terminate({proc.pid: started}, grace=1.0) == []
    finally:
        proc.kill()
        proc.wait()


def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    parent = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from gpudra_testkit.localcluster.process import Component
        c = Component("sleep", ["sleep", "300"], Path({str(tmp_path)!r}) / "sleep.log")
        c.start()
        Path({str(tmp_path)!r}, "pid").write_text(str(c.pid))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", parent], check=False, timeout=30)
    assert result.returncode == -signal.SIGKILL
    pid = int((tmp_path / "pid").read_text())
    assert _wait_gone([pid]) == [], "component survived its SIGKILLed parent"


def test_detached_children_outlive_the_parent(tmp_path: Path) -> None:
    parent = textwrap.dedent(
        f"""
        from pathlib import Path
        from gpudra_testkit.localcluster.process import Component
        c = Component("sleep", ["sleep", "300"], Path({str(tmp_path)!r}) / "s.log", detach=True)
        c.start()
        Path({str(tmp_path)!r}, "pid").write_text(f"{{c.pid}} {{c.started_at}}")
        """
    )
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=30)
    pid, started = (int(x) for x in (tmp_path / "pid").read_text().split())
    try:
        time.sleep(0.2)
        assert is_running(pid, started)
    finally:
        assert terminate({pid: started}, grace=1.0) == []


def test_pki_generates_verifiable_chain(tmp_path: Path) -> None:
    creds = generate(tmp_path)
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(creds.ca_cert),
            str(creds.serving_cert),
            str(creds.admin_cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(creds.admin_cert), "-noout", "-subject"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "O = system:masters" in subject
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(creds.serving_cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in sans and "DNS:localhost" in sans
    assert (creds.sa_key.stat().st_mode & 0o777) == 0o600
