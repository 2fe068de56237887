"""Run ``gpudra kubelet-plugin`` as a real process for a test node, with its own directories.

The daemon is started exactly as a user starts it outside a cluster (the CLI, flags, a
kubeconfig) and stopped with SIGTERM, or SIGKILL to simulate a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpudra.resourceapi import DRIVER_NAME


@dataclass
class NodeDaemon:
    node_name: str
    profile: str
    kubeconfig: Path
    root: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def plugin_dir(self) -> Path:
        return self.root / "plugins" / DRIVER_NAME

    @property
    def registry_dir(self) -> Path:
        return self.root / "plugins_registry"

    @property
    def cdi_dir(self) -> Path:
        return self.root / "cdi"

    @property
    def state_file(self) -> Path:
        return self.root / "mock-node.json"

    @property
    def log_file(self) -> Path:
        return self.root / "kubelet-plugin.log"

    @property
    def reg_socket(self) -> Path:
        return self.registry_dir / f"{DRIVER_NAME}-reg.sock"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gpudra",
            "kubelet-plugin",
            "--backend",
            "mock",
            "--profile",
            self.profile,
            "--node-name",
            self.node_name,
            "--kubeconfig",
            str(self.kubeconfig),
            "--plugin-dir",
            str(self.plugin_dir),
            "--registry-dir",
            str(self.registry_dir),
            "--cdi-dir",
            str(self.cdi_dir),
            "--mock-state-file",
            str(self.state_file),
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> NodeDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        self.reg_socket.unlink(missing_ok=True)
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.reg_socket.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelet-plugin exited {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no registration socket after {timeout}s:\n{self.logs()}")
            time.sleep(0.05)
        return self

    def logs(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-tail:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
