"""Run ``gpudra device-plugin`` as a real process for a test node, in its own kubelet dir.

The daemon is started as the Helm chart deploys it (`gpudra_testkit.harness.chart`: the
``device-plugin`` DaemonSet's command, args, env and config files, rendered in mock mode with
this node's directories), plus any test flags, and stopped with SIGTERM, or SIGKILL to
simulate a crash.  It needs no kubeconfig: the device plugin has no API access.

Readiness is a parameter of ``start``, because what "up" means depends on the test: with a
kubelet (real, or ``gpudra_testkit.harness.dpkubelet``) serving ``kubelet.sock`` the default,
a plugin socket in ``<root>/device-plugins``, is right; without one, wait for a log line
(``log_contains``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpudra_testkit.harness.chart import Launch, launch, render

PLUGIN_SOCKETS = "gpudra-*.sock"  # the plugin's own sockets; kubelet.sock is the kubelet's


def plugin_socket_exists(p: DevicePluginProcess) -> bool:
    """The default readiness: the plugin has created one of its sockets."""
    return bool(p.plugin_sockets())


def log_contains(text: str) -> Callable[[DevicePluginProcess], bool]:
    """Readiness for a test without a kubelet: ``text`` (e.g. "serving") is in the log."""
    return lambda p: text in p.log_text()


@dataclass
class DevicePluginProcess:
    node_name: str
    profile: str
    root: Path  # the kubelet dir: device-plugins/, gpudra/ below it
    cdi_root: Path | None = None  # default <root>/cdi
    values: dict[str, Any] = field(default_factory=dict)  # on top of the devicePlugin values
    extra_args: list[str] = field(default_factory=list)
    # the kubelet's device-plugin dir when it is not <root>/device-plugins: a real kubelet
    # always uses /var/lib/kubelet/device-plugins, whatever its --root-dir
    socket_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def device_plugin_dir(self) -> Path:
        return self.socket_dir or self.root / "device-plugins"

    @property
    def cdi_dir(self) -> Path:
        return self.cdi_root or self.root / "cdi"

    @property
    def gpu_lock_dir(self) -> Path:
        """Shared with a DRA kubelet plugin in the same kubelet dir."""
        return self.root / "gpudra" / "gpus"

    @property
    def state_file(self) -> Path:
        return self.root / "gpudra" / "device-plugin" / "mock-state.json"  # the chart's

    @property
    def files_dir(self) -> Path:
        """Where the chart's ConfigMaps are written (apart from a NodeDaemon's in ``etc``)."""
        return self.root / "etc" / "device-plugin"

    @property
    def log_file(self) -> Path:
        return self.root / "device-plugin.log"

    def plugin_sockets(self) -> list[Path]:
        return sorted(self.device_plugin_dir.glob(PLUGIN_SOCKETS))

    def chart_values(self) -> dict[str, Any]:
        """The chart values that deploy only this daemon (mock mode, this node's dirs)."""
        device_plugin = {
            "enabled": True,
            "kubeletDir": str(self.root),
            "cdiDir": str(self.cdi_dir),
            "metricsPort": 0,
        }
        return {
            "mock": {"enabled": True, "profile": self.profile, "profileNodeLabel": ""},
            "kubeletPlugin": {"enabled": False},
            "controller": {"enabled": False},
            "devicePlugin": {**device_plugin, **self.values},
        }

    def launch(self) -> Launch:
        """The chart's device-plugin container as a process, plus the test flags."""
        objs = render(self.chart_values())
        how = launch(
            objs,
            "DaemonSet",
            component="device-plugin",
            node_name=self.node_name,
            files_dir=self.files_dir,
        )
        if self.socket_dir is not None:
            how.argv += ["--device-plugin-dir", str(self.socket_dir)]
        how.argv += self.extra_args
        return how

    def argv(self) -> list[str]:
        return self.launch().argv

    def start(
        self,
        timeout: float = 30.0,
        *,
        ready: Callable[[DevicePluginProcess], bool] | None = None,
        how: Launch | None = None,
        env: dict[str, str] | None = None,
    ) -> DevicePluginProcess:
        """Start and wait until ``ready`` (default: a plugin socket exists).  ``how``: a launch
        rendered before (rendering takes a while); ``env``: variables on top of the launch's.
        The socket dir is created as the kubelet does at its start; stale plugin sockets are
        removed so that the default readiness sees this process's."""
        ready = ready or plugin_socket_exists
        self.device_plugin_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.plugin_sockets():
            stale.unlink(missing_ok=True)
        how = how or self.launch()
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                how.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **how.env, **(env or {})},
            )
        deadline = time.monotonic() + timeout
        while not ready(self):
            if self.proc.poll() is not None:
                raise RuntimeError(f"device-plugin exited {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"device-plugin not ready after {timeout}s:\n{self.logs()}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log_file.read_text()
        except OSError:
            return ""

    def logs(self, tail: int = 60) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-tail:]) if text else "(no log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
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
