"""``gpudra device-plugin``'s wiring: lock its GPUs, serve one socket per resource, register
with the kubelet, and follow the node agent's GPU watch.

Order: the GPU set is checked against the node and locked against the DRA plugin
(``gpudra.nodeagent.locks``), the CDI spec is written, the resource servers listen, and only
then is the kubelet asked to register them.  What happens to the GPUs over time is the node
agent's (``gpudra.nodeagent``), as for the DRA plugin: the GPU watch's health events and NVML
probe feed the one fault tracker, and its reports refresh what ListAndWatch advertises (each
change pushed to the streams of the resources it touches, no other GPU's devices touched).
The one loop of its own, guarded like the watch's threads (``gpudra.common.threads``):

* **kubelet watch** (every 0.1 s): ``kubelet.sock`` with a new identity (the kubelet
  restarted, or started after us) or a server whose socket was removed (the kubelet clears
  its dir when it starts) -> the servers are restarted and registered again, within a
  second; a failed Register is retried every second while the kubelet is away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpudra.cdi.fakedev import make_fake_dev_root
from gpudra.cdi.writer import CdiWriter
from gpudra.deviceplugin.grpc_server import ResourceServer, rpc_error_text
from gpudra.deviceplugin.options import Options
from gpudra.deviceplugin.service import DevicePluginService
from gpudra.metrics.device_plugin import DevicePluginMetrics
from gpudra.nodeagent.agent import node_agent
from gpudra.nodeagent.catalogue_source import CatalogueSource
from gpudra.nodeagent.locks import lock_served
from gpudra.nodeagent.watch import WatchReport
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import NvmlError
from gpudra.settings import DevicePluginSettings

log = logging.getLogger(__name__)

KUBELET_POLL_S = 0.1
REGISTER_RETRY_S = 1.0


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


class DevicePluginDaemon:
    def __init__(
        self,
        settings: DevicePluginSettings,
        *,
        backend: GpuBackend,
        options: Options,
        metrics: DevicePluginMetrics | None = None,
    ) -> None:
        self.settings = s = settings
        self.options = options
        self._backend = backend
        self.metrics = metrics or DevicePluginMetrics()
        self._http: ThreadingHTTPServer | None = None
        inv = backend.inventory()
        s.check_gpu_sets(len(inv.gpus))
        agent = node_agent(backend, inv, s)
        self.liveness, self.faults, self.watch = agent.liveness, agent.faults, agent.watch
        self._locks = lock_served(s.gpu_lock_path, inv, s.gpus, holder="device-plugin")
        # the node's devices from the watch's inventory: what a report says is what is shown
        self.catalogues = CatalogueSource(self.watch.last_inventory, served=s.gpus)
        dev_root = s.dev_root
        if dev_root is not None:
            nodes = [p for d in self.catalogues.current().devices.values() for p in d.device_nodes]
            make_fake_dev_root(dev_root, nodes)
        self.cdi = CdiWriter(s.cdi_dir)
        self.service = DevicePluginService(
            options, cdi=self.cdi, dev_root=str(dev_root) if dev_root else None
        )
        self.servers: dict[str, ResourceServer] = {}
        self._lock = threading.Lock()
        self._refresh()
        self.watch.subscribe(self._gpus_changed)

    # --- state ----------------------------------------------------------------------------

    def _gpus_changed(self, report: WatchReport) -> None:
        self._refresh()

    def _refresh(self) -> None:
        """Advertise the node as the watch saw it last, with the tracker's verdicts."""
        with self._lock:
            catalogue = self.catalogues.current()
            unhealthy = self.faults.unhealthy(catalogue.inventory)
            lay = self.service.refresh(catalogue, unhealthy)
        self.metrics.layout_problems.set(len(lay.problems))
        for r in lay.resources:
            bad = sum(1 for d in r.devices if d.gpu_index in unhealthy)
            self.metrics.advertised(r.name, len(r.devices) - bad, bad)

    # --- the kubelet watch ------------------------------------------------------------------

    def _serve_resources(self) -> list[ResourceServer]:
        """Start a server for each resource without one, and restart each whose socket is
        gone; the servers (re)started."""
        for name in self.service.resource_names():
            if name not in self.servers:
                self.servers[name] = ResourceServer(
                    self.service, name, self.settings.device_plugin_path, self.metrics
                )
        restarted = [srv for srv in self.servers.values() if not srv.serving()]
        for srv in restarted:
            srv.start()
            log.info("serving %s on %s", srv.resource, srv.socket)
        return restarted

    def _watch_kubelet(self, stop: threading.Event) -> None:
        sock = self.settings.kubelet_socket
        registered_with: tuple[int, int] | None = None
        retry_at = 0.0
        while not stop.is_set():
            restarted = self._serve_resources()
            ident = _identity(sock)
            now = time.monotonic()
            todo = list(self.servers.values()) if ident != registered_with else restarted
            if ident is not None and todo and now >= retry_at:
                if self._register(todo, sock):
                    registered_with = ident
                else:
                    retry_at = now + REGISTER_RETRY_S
            stop.wait(KUBELET_POLL_S)

    def _register(self, servers: list[ResourceServer], sock: Path) -> bool:
        ok = True
        for srv in servers:
            try:
                srv.register(sock)
            except Exception as e:  # grpc.RpcError or OSError: the kubelet is away or refuses
                ok = False
                self.metrics.registered(srv.resource, ok=False)
                log.warning(
                    "cannot register %s with the kubelet yet: %s", srv.resource, rpc_error_text(e)
                )
                continue
            self.metrics.registered(srv.resource, ok=True)
            try:
                age = time.time() - sock.stat().st_mtime
            except FileNotFoundError:
                age = float("nan")
            log.info(
                "registered %s (endpoint %s) with the kubelet; kubelet.sock is %.3f s old",
                srv.resource,
                srv.socket.name,
                age,
            )
        return ok

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        log.info("device plugin: %s; GPUs %s", self.options.describe(), self.settings.gpus)
        self.service.ensure_cdi_spec()
        self._serve_resources()  # a socket that cannot be served stops the start, with why
        self.liveness.threads.spawn("kubelet-watch", self._watch_kubelet, self.liveness.stop)
        self.watch.start()

    def healthz(self) -> tuple[bool, str]:
        v = self.liveness.live()
        return v.ok, v.text()

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> ThreadingHTTPServer:
        self._http = self.metrics.serve(port, addr, routes={"/healthz": self.healthz})
        return self._http

    def stop(self) -> None:
        self.liveness.stop.set()
        self.service.close()
        self.liveness.threads.join(timeout_s=5)
        for srv in self.servers.values():
            srv.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        with contextlib.suppress(NvmlError):
            self._backend.close()
        self._locks.release()
        log.info("device plugin stopped (pid %d)", os.getpid())

    def wait(self, stop: threading.Event) -> None:
        stop.wait()

    def describe(self) -> dict[str, Any]:
        return {r.name: len(r.devices) for r in self.service.layout.resources}
