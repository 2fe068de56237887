"""``gpudra device-plugin``'s life cycle: lock its GPUs, serve one socket per resource,
register with the kubelet, follow GPU health and the kubelet's restarts.

Order: the GPU set is checked against the node and locked against the DRA plugin
(``gpudra.common.gpulocks``), the CDI spec is written, the resource servers listen, and only
then is the kubelet asked to register them.  Threads, each supervised (one that dies makes
``/healthz`` fail):

* **kubelet watch** (every 0.1 s): ``kubelet.sock`` with a new identity (the kubelet
  restarted, or started after us) or a server whose socket was removed (the kubelet clears
  its dir when it starts) -> the servers are restarted and registered again, within a
  second; a failed Register is retried every second while the kubelet is away;
* **health events** from the backend (XIDs, lost GPUs, recoveries) and an **NVML probe**
  (every ``health_probe_interval_s``: lost GPUs without an event, MIG layout changes, NVML's
  recovery action of the GPUs with XID faults, whose NONE ends them): each change is pushed
  to the ListAndWatch streams of the resources it touches, and no other GPU's devices are
  touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpudra.catalogue.catalogue import NodeCatalogue, build_catalogue
from gpudra.catalogue.gpuset import GpuSetError
from gpudra.cdi.fakedev import make_fake_dev_root
from gpudra.cdi.writer import CdiWriter
from gpudra.common.gpulocks import GpuLocks
from gpudra.deviceplugin.grpc_server import ResourceServer, rpc_error_text
from gpudra.deviceplugin.health import GpuHealth
from gpudra.deviceplugin.options import Options
from gpudra.deviceplugin.service import DevicePluginService
from gpudra.devices.inventory import Inventory
from gpudra.metrics.device_plugin import DevicePluginMetrics
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import NvmlError
from gpudra.nvml.health_events import read_recovery_actions
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
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dead: dict[str, str] = {}
        self._http: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        inv = backend.inventory()
        try:
            self._served = s.gpus.resolve(len(inv.gpus))
        except GpuSetError as e:
            raise GpuSetError(f"invalid settings: gpus: {e}") from e
        self._locks = GpuLocks(s.gpu_lock_path, holder="device-plugin", setting="--gpus")
        self._locks.acquire((g.index, g.uuid) for g in inv.gpus if g.index in self._served)
        dev_root = s.dev_root
        if dev_root is not None:
            nodes = [p for d in build_catalogue(inv).devices.values() for p in d.device_nodes]
            make_fake_dev_root(dev_root, nodes)
        self.cdi = CdiWriter(s.cdi_dir)
        self.service = DevicePluginService(
            options, cdi=self.cdi, dev_root=str(dev_root) if dev_root else None
        )
        self.gpu_health = GpuHealth(recovery_s=s.health_recovery_s)
        self._inventory = inv
        self._nvml_error: str | None = None
        self.servers: dict[str, ResourceServer] = {}
        self._refresh(inv)

    # --- state ----------------------------------------------------------------------------

    def catalogue(self, inv: Inventory) -> NodeCatalogue:
        return build_catalogue(inv, served=self._served)

    def _refresh(self, inv: Inventory | None = None) -> None:
        with self._lock:
            if inv is not None:
                self._inventory = inv
            inv = self._inventory
            unhealthy = self.gpu_health.unhealthy(inv)
            if self._nvml_error is not None:
                unhealthy = {g.index: self._nvml_error for g in inv.gpus}
            lay = self.service.refresh(self.catalogue(inv), unhealthy)
        self.metrics.layout_problems.set(len(lay.problems))
        for r in lay.resources:
            bad = sum(1 for d in r.devices if d.gpu_index in unhealthy)
            self.metrics.advertised(r.name, len(r.devices) - bad, bad)

    # --- threads ----------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def supervised() -> None:
            try:
                target()
            except Exception as e:
                log.exception("thread %s died", name)
                self._dead[name] = f"{type(e).__name__}: {e}"
                return
            if not self._stop.is_set():
                self._dead[name] = "ended"

        t = threading.Thread(target=supervised, name=name, daemon=True)
        t.start()
        self._threads.append(t)

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

    def _watch_kubelet(self) -> None:
        sock = self.settings.kubelet_socket
        registered_with: tuple[int, int] | None = None
        retry_at = 0.0
        while not self._stop.is_set():
            restarted = self._serve_resources()
            ident = _identity(sock)
            now = time.monotonic()
            todo = list(self.servers.values()) if ident != registered_with else restarted
            if ident is not None and todo and now >= retry_at:
                if self._register(todo, sock):
                    registered_with = ident
                else:
                    retry_at = now + REGISTER_RETRY_S
            self._stop.wait(KUBELET_POLL_S)

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

    def _watch_health(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._backend.wait_health_event(1.0)
            except NvmlError as e:
                log.warning("health events unavailable: %s", e)
                self._stop.wait(5.0)
                continue
            if event is None:
                if self.gpu_health.due():  # a recovered GPU's damping window ended
                    self._refresh()
                continue
            log.warning("GPU health event: %s", event.to_wire())
            try:
                inv = self._backend.inventory()
            except NvmlError:
                inv = None
            with self._lock:
                self.gpu_health.event(event, inv or self._inventory)
            self._refresh(inv)

    def _probe(self) -> None:
        while not self._stop.wait(self.settings.health_probe_interval_s):
            try:
                inv = self._backend.inventory()
            except NvmlError as e:
                why = f"NVML is not answering: {e}"
                if self._nvml_error is None:
                    log.error("%s; every GPU is unhealthy until it does", why)
                self._nvml_error = why
                self._refresh()
                continue
            back = self._nvml_error is not None
            self._nvml_error = None
            with self._lock:
                changed = self.gpu_health.inventory(inv)
                xid_gpus = self.gpu_health.xid_gpus()
            actions = read_recovery_actions(self._backend.recovery_action, xid_gpus)
            with self._lock:
                changed = self.gpu_health.recovery_actions(actions) or changed
            if back or changed or inv != self._inventory:
                self._refresh(inv)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        log.info("device plugin: %s; GPUs %s", self.options.describe(), self.settings.gpus)
        self.service.ensure_cdi_spec()
        self._serve_resources()  # a socket that cannot be served stops the start, with why
        self._spawn("kubelet-watch", self._watch_kubelet)
        self._spawn("health-events", self._watch_health)
        self._spawn("nvml-probe", self._probe)

    def healthz(self) -> tuple[bool, str]:
        problems = [f"thread {n} died: {why}" for n, why in sorted(self._dead.items())]
        if self._nvml_error:
            problems.append(self._nvml_error)
        return (not problems, "ok\n" if not problems else "".join(f"{p}\n" for p in problems))

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> ThreadingHTTPServer:
        self._http = self.metrics.serve(port, addr, routes={"/healthz": self.healthz})
        return self._http

    def stop(self) -> None:
        self._stop.set()
        self.service.close()
        for t in self._threads:
            t.join(timeout=5)
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
