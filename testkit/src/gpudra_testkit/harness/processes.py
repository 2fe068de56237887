"""Processes on this host that tests look for (the mock MPS daemons a node daemon starts)."""

from __future__ import annotations

from pathlib import Path


def mps_daemons(marker: str) -> list[int]:
    """Pids of live mock MPS daemons whose command line names ``marker`` (their pipe dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "gpudra.nvml.mock.mps_daemon" in cmd and marker in cmd and state not in "ZX":
            pids.append(int(proc.name))
    return sorted(pids)
