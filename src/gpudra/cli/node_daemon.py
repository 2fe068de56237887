"""What both node-daemon commands do around their daemon: open the GPU backend for the node,
and run the daemon until SIGTERM or SIGINT (metrics and health served first, stopped
cleanly on the way out)."""

from __future__ import annotations

import logging
import signal
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Protocol

from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.factory import open_backend
from gpudra.settings import BackendSettings

log = logging.getLogger(__name__)


class NodeDaemon(Protocol):
    def serve_http(self, port: int, addr: str = ...) -> ThreadingHTTPServer: ...
    def start(self) -> None: ...
    def wait(self, stop: threading.Event) -> None: ...
    def stop(self) -> None: ...


def node_backend(
    s: BackendSettings,
    node_name: str,
    *,
    profile: str | None,
    profile_file: Path | None,
    source: str = "",
) -> GpuBackend:
    """The backend for ``node_name`` (``source``: where the mock profile came from, for the
    message when it cannot be loaded)."""
    try:
        return open_backend(
            s.backend,
            node_name=node_name,
            profile=profile,
            profile_file=profile_file,
            state_file=s.mock_state_file,
            clique_id=s.clique_id,
        )
    except ProfileError as e:
        where = f"{source}: " if source else ""
        raise ProfileError(f"node {node_name}: {where}{e}") from e


def run_until_signalled(daemon: NodeDaemon, metrics_port: int) -> int:
    if metrics_port:
        daemon.serve_http(metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    try:
        daemon.wait(stop)
    finally:
        daemon.stop()
    return 0
