"""Run ``gpudra kubelet-plugin`` as a real process for a test node, with its own directories.

The daemon is started as the Helm chart deploys it (`gpudra_testkit.harness.chart`: the DaemonSet's
command, args, env and config file, rendered in mock mode with this node's directories), plus
a kubeconfig and any test flags, and stopped with SIGTERM, or SIGKILL to simulate a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.harness.chart import Launch, launch, render
from gpudra_testkit.localcluster.realnode import RealNode


@dataclass
class NodeDaemon:
    node_name: str
    profile: str
    kubeconfig: Path
    root: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    cdi_root: Path | None = None  # default <root>/cdi; a real node's containerd reads its own

    @property
    def plugin_dir(self) -> Path:
        return self.root / "plugins" / DRIVER_NAME

    @property
    def registry_dir(self) -> Path:
        return self.root / "plugins_registry"

    @property
    def cdi_dir(self) -> Path:
        return self.cdi_root or self.root / "cdi"

    @property
    def state_file(self) -> Path:
        return self.plugin_dir / "mock-state.json"  # where the chart puts it

    @property
    def boot_id_file(self) -> Path:
        """The boot id this daemon reads (tests change it to simulate a reboot)."""
        return self.root / "boot_id"

    def checkpoint_text(self) -> str:
        try:
            return (self.plugin_dir / "checkpoint.json").read_text()
        except FileNotFoundError:
            return ""

    @property
    def log_file(self) -> Path:
        return self.root / "kubelet-plugin.log"

    @property
    def reg_socket(self) -> Path:
        return self.registry_dir / f"{DRIVER_NAME}-reg.sock"

    @classmethod
    def on_real_node(cls, node: RealNode, profile: str, kubeconfig: Path) -> NodeDaemon:
        """A daemon in a real node's kubelet plugin dirs, writing the CDI specs its containerd
        reads."""
        return cls(
            node.name, profile, kubeconfig, node.layout.kubelet_root, cdi_root=node.layout.cdi_dir
        )

    def chart_values(self) -> dict[str, Any]:
        """The chart values that deploy this daemon (mock mode, this node's directories)."""
        return {
            "mock": {"enabled": True, "profile": self.profile, "profileNodeLabel": ""},
            "kubeletPlugin": {
                "kubeletDir": str(self.root),
                "cdiDir": str(self.cdi_dir),
                "metricsPort": 0,
            },
            "controller": {"enabled": False},
        }

    def launch(self) -> Launch:
        """The chart's DaemonSet container as a process, plus a kubeconfig and test flags."""
        objs = render(self.chart_values())
        how = launch(objs, "DaemonSet", node_name=self.node_name, files_dir=self.root / "etc")
        how.argv += ["--kubeconfig", str(self.kubeconfig), "--boot-id-file", str(self.boot_id_file)]
        how.argv += self.extra_args
        return how

    def argv(self) -> list[str]:
        return self.launch().argv

    def start(
        self,
        timeout: float = 30.0,
        *,
        how: Launch | None = None,
        env: dict[str, str] | None = None,
    ) -> NodeDaemon:
        """Start and wait for the registration socket.  ``how``: a launch rendered before
        (rendering the chart takes a while; the crash suite restarts hundreds of times);
        ``env``: variables on top of the launch's."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.boot_id_file.exists():
            self.boot_id_file.write_text(Path("/proc/sys/kernel/random/boot_id").read_text())
        self.reg_socket.unlink(missing_ok=True)
        log = self.log_file.open("ab")
        how = how or self.launch()
        self.proc = subprocess.Popen(
            how.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **how.env, **(env or {})},
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
