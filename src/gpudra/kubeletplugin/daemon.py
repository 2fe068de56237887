"""The node daemon's life cycle: start the pieces in order, keep them running, stop cleanly.

Order matters: the plugin-directory lock (one daemon per directory), checkpoint and CDI (so
the first prepare finds its state), the slice publisher, then the DRA service, and only then
the registration socket.  Publishing and preparing read one node catalogue
(``CatalogueSource``), so what is published is what can be prepared; the stray-MIG sweep
runs once, on the publisher's first pass after the server's version is known.  Background
threads: the slice publisher; a health-event thread and an NVML probe that feed the fault
tracker (``FaultTaints``), whose changes become a republish with the devices' taints, a
message on the kubelet's health stream (``health_stream``) and an Event on the Node
(``node_events``, sent by its own thread); checkpoint garbage collection, which also
restarts a prepared claim's MPS daemon that died (``NodePlugin.check_mps``).  Every thread is
supervised: none ends on an error, and one that ends anyway makes ``/healthz``
fail, as do an API server or NVML that stop answering.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpudra.catalogue.catalogue import GpuMode, NodeCatalogue
from gpudra.catalogue.gpuset import GpuSetError
from gpudra.cdi.fakedev import make_fake_dev_root
from gpudra.cdi.writer import CdiWriter
from gpudra.common.gpulocks import GpuLocked, GpuLocks
from gpudra.devices.faults import Fault
from gpudra.devices.inventory import Inventory
from gpudra.kube.client import KubeClient
from gpudra.kubeletplugin.catalogue_source import CatalogueSource
from gpudra.kubeletplugin.checkpoint import CheckpointStore
from gpudra.kubeletplugin.dirlock import DirLock
from gpudra.kubeletplugin.fault_taints import FaultTaints
from gpudra.kubeletplugin.grpc_server import PluginServers
from gpudra.kubeletplugin.health import HealthState
from gpudra.kubeletplugin.health_stream import DeviceHealth, HealthBroadcast, device_health
from gpudra.kubeletplugin.mps import MpsControl
from gpudra.kubeletplugin.node import NodePlugin
from gpudra.kubeletplugin.node_events import NodeEvents
from gpudra.kubeletplugin.recovery import rebuild
from gpudra.kubeletplugin.strays import unclaimed_instances
from gpudra.metrics.node import NodeMetrics
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import NvmlError
from gpudra.resourceslices.builder import desired_slices
from gpudra.resourceslices.publisher import SlicePublisher
from gpudra.settings import KubeletPluginSettings

log = logging.getLogger(__name__)


class KubeletPluginDaemon:
    def __init__(
        self,
        settings: KubeletPluginSettings,
        *,
        client: KubeClient,
        backend: GpuBackend,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._backend = backend
        self._stop = threading.Event()
        self._swept = False
        self.metrics = metrics or NodeMetrics()
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        s = settings
        gpus = backend.inventory().gpus
        for field in ("gpus", "dynamic_mig_gpus", "controller_managed_gpus", "shared_gpus"):
            try:  # an index this node lacks stops the daemon before it takes anything
                getattr(s, field).resolve(len(gpus))
            except GpuSetError as e:
                raise GpuSetError(f"invalid settings: {field}: {e}") from e
        self.health = HealthState(
            api_unreachable_s=s.api_unreachable_s, nvml_wedged_s=s.nvml_wedged_s
        )
        s.plugin_path.mkdir(parents=True, exist_ok=True)
        self._dir_lock = DirLock(s.plugin_path)
        self._dir_lock.acquire()  # before anything touches the checkpoint or the sockets
        # the GPUs it serves, locked against the device plugin (GpuLocked: served there)
        self._gpu_locks = GpuLocks(s.gpu_lock_path, holder="kubelet-plugin", setting="--gpus")
        served = s.gpus.resolve(len(gpus))
        try:
            self._gpu_locks.acquire((g.index, g.uuid) for g in gpus if g.index in served)
        except GpuLocked:
            self._dir_lock.release()
            raise
        self.cdi = CdiWriter(s.cdi_dir)
        self.checkpoint = CheckpointStore(
            s.checkpoint_file,
            node_name=s.node_name,
            rebuild=lambda: rebuild(self.cdi, pool=s.node_name),
        )
        self._begin_boot(s.boot_id_file)
        if s.dev_root is not None:
            make_fake_dev_root(s.dev_root, [f"/dev/nvidia{g.minor}" for g in gpus])
        self.node_events = NodeEvents(
            client, node_name=s.node_name, lost_effect=s.lost_gpu_taint_effect
        )
        self.faults = FaultTaints(
            recovery_s=s.health_recovery_s,
            lost_effect=s.lost_gpu_taint_effect,
            metrics=self.metrics,
            on_change=self._gpu_faults_changed,
        )
        # the one answer to "what is device <name> here?", for publishing and for preparing
        self.catalogues = CatalogueSource(
            backend.inventory,
            client.server_version,
            dynamic_mig=s.dynamic_mig_gpus,
            managed=s.controller_managed_gpus,
            served=s.gpus,
            shared=s.shared_gpus,
            shares=s.gpu_shares,
            taints=self.faults.taints,
            on_build=self._catalogue_built,
        )
        self.node = NodePlugin(
            client=client,
            backend=backend,
            checkpoint=self.checkpoint,
            cdi=self.cdi,
            driver=s.driver_name,
            node_name=s.node_name,
            dev_root=str(s.dev_root) if s.dev_root else None,
            catalogue=self.catalogues.current,
            metrics=self.metrics,
            mps=MpsControl(mock=s.backend == "mock"),
            mps_root=s.plugin_path / "mps",
        )
        self.publisher = SlicePublisher(
            client,
            node_name=s.node_name,
            driver=s.driver_name,
            desired=self._desired,
            on_api=self._api_answered,
        )
        self.health_stream = HealthBroadcast(self._device_health, heartbeat_s=s.health_heartbeat_s)
        self.servers = PluginServers(
            node=self.node,
            driver=s.driver_name,
            dra_socket=s.dra_socket,
            reg_socket=s.registration_socket,
            health=self.health_stream if s.health_stream else None,
        )

    def _begin_boot(self, boot_id_file: Path) -> None:
        try:
            boot_id = boot_id_file.read_text().strip()
        except OSError as e:
            log.warning(
                "cannot read the boot id from %s (%s): reboots are not detected, "
                "missing CDI specs still are",
                boot_id_file,
                e.strerror or e,
            )
            return
        stale = self.checkpoint.begin_boot(boot_id)
        if stale:
            log.warning(
                "the node rebooted since the checkpoint was written (boot id now %s): "
                "%d claim(s) will be prepared again: %s",
                boot_id,
                len(stale),
                ", ".join(f"{c.namespace}/{c.name}" for c in stale),
            )

    def _catalogue_built(self, catalogue: NodeCatalogue) -> None:
        self.metrics.dynamic_mig.set(1 if catalogue.publishes_dynamic_mig else 0)
        self.metrics.shared(
            published=len(catalogue.gpus_in(GpuMode.SHARED)),
            fallback=len(catalogue.shared_refused),
        )

    def _sweep_strays(self, catalogue: NodeCatalogue) -> None:
        """MIG instances on dynamic-MIG GPUs that no checkpointed claim holds were left by
        someone else (or by a crash between destroy and checkpoint): say so, and remove them
        when configured to.  The catalogue (its inventory) is read before the checkpoint, so
        an instance a concurrent prepare creates is always seen with its record."""
        strays = unclaimed_instances(catalogue, self.checkpoint.claims().values())
        dynamic = len(catalogue.gpus_in(GpuMode.DYNAMIC_MIG))
        log.info(
            "MIG sweep: %d instance(s) on %d dynamic-MIG GPU(s) held by no claim",
            len(strays),
            dynamic,
        )
        for m in strays:
            where = f"{m.profile} at {m.placement_start} on GPU {m.parent_index}"
            if not self.settings.remove_unknown_mig:
                log.warning(
                    "MIG instance %s (%s) is held by no claim; start with "
                    "--remove-unknown-mig to remove such instances",
                    m.uuid,
                    where,
                )
                continue
            try:
                self._backend.destroy_mig_device(m.uuid)
            except NvmlError as e:  # e.g. in use: never a reason not to run
                log.warning(
                    "cannot remove MIG instance %s (%s), held by no claim: %s; leaving it",
                    m.uuid,
                    where,
                    e,
                )
                continue
            log.warning("removed MIG instance %s (%s): no claim holds it", m.uuid, where)

    def _device_health(self) -> tuple[DeviceHealth, ...]:
        """What the kubelet's health stream is sent now (the last catalogue if NVML fails)."""
        try:
            catalogue: NodeCatalogue | None = self.catalogues.current()
        except NvmlError as e:
            log.warning("health stream: NVML does not answer (%s); sending the last state", e)
            catalogue = self.catalogues.last()
        if catalogue is None:
            return ()
        return device_health(catalogue, self.faults.current(), pool=self.settings.node_name)

    def _gpu_faults_changed(
        self, index: int, uuid: str, before: tuple[Fault, ...], now: tuple[Fault, ...]
    ) -> None:
        """Whoever builds the catalogue first sees a GPU's taints change (a damping window
        that ended, seen by a prepare or the health stream): the publisher and the health
        stream are told from here, so none of them misses it."""
        self.node_events.gpu_changed(index, uuid, before, now)
        self._faults_changed()

    def _faults_changed(self) -> None:
        """A GPU's faults changed: republish the taints and tell the health stream."""
        self.publisher.trigger()
        self.health_stream.changed()

    def _desired(self, owner: dict[str, Any] | None) -> list[dict[str, Any]]:
        catalogue = self.catalogues.current()
        if not self._swept and catalogue.capabilities.known:
            # once, as soon as the GPU modes are certain (they depend on the server version)
            self._swept = True
            self._sweep_strays(catalogue)
            catalogue = self.catalogues.current()
        return desired_slices(catalogue, driver=self.settings.driver_name, owner=owner)

    def _api_answered(self, error: str) -> None:
        if error:
            self.health.api_failed(error)
        else:
            self.health.api_ok()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        """Run ``target`` on a thread that reports to health if it ever ends before stop."""

        def supervised() -> None:
            try:
                target(*args)
            except BaseException as e:
                log.exception("thread %s died", name)
                self.health.thread_died(name, f"{type(e).__name__}: {e}")
                return
            if not self._stop.is_set():
                log.error("thread %s ended", name)
                self.health.thread_died(name, "ended")

        t = threading.Thread(target=supervised, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _watch_health(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._backend.wait_health_event(1.0)
            except NvmlError as e:
                log.warning("health events unavailable: %s", e)
                self._stop.wait(5.0)
                continue
            except Exception:
                log.exception("waiting for GPU health events failed; retrying")
                self._stop.wait(5.0)
                continue
            if event is not None:
                log.warning("GPU health event: %s", event.to_wire())
                try:
                    seen: Inventory | None = self._backend.inventory()
                except NvmlError:
                    seen = self.catalogues.last_inventory()
                if seen is not None and self.faults.event(event, seen):
                    self._faults_changed()
            if self.faults.due():  # a recovered GPU's damping window ended
                self._faults_changed()

    def _probe_nvml(self) -> None:
        """Read the inventory now and then: proves NVML answers, and republishes when a GPU's
        health changed without an event (a GPU lost to a per-GPU NVML error, or NVML's
        recovery action back to NONE for a GPU with XID faults)."""
        seen: dict[str, str] | None = None
        while not self._stop.is_set():
            try:
                inv = self._backend.inventory()
            except Exception as e:  # NvmlError, or worse: both mean NVML is not answering
                log.warning("NVML probe failed: %s", e)
                self.health.nvml_failed(f"{type(e).__name__}: {e}")
            else:
                self.health.nvml_ok()
                if self.faults.inventory(inv):
                    self._faults_changed()
                if self.faults.recovery_actions(self._backend.recovery_action):
                    self._faults_changed()
                now = {g.uuid: g.health.value for g in inv.gpus}
                if seen is not None and now != seen:
                    log.warning("GPU health changed: %s", now)
                    self._faults_changed()
                seen = now
            self._stop.wait(self.settings.nvml_probe_interval_s)

    def _collect_garbage(self) -> None:
        while not self._stop.wait(self.settings.gc_interval_s):
            try:
                released = self.node.collect_garbage()
            except Exception:
                log.exception("checkpoint garbage collection failed; retrying next interval")
                continue
            if released:
                self.metrics.released.inc(len(released))
                self.publisher.trigger()
            try:  # and the MPS daemons of prepared claims: one that died is started again
                self.node.check_mps()
            except Exception:
                log.exception("checking the MPS daemons failed; retrying next interval")

    def _verdict(self, ready: bool) -> tuple[bool, str]:
        if ready:
            self.health.registered(self.servers.registration.registered.is_set())
            v = self.health.ready()
        else:
            v = self.health.live()
        self.metrics.healthy.set(1 if self.health.live().ok else 0)
        return v.ok, v.text()

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> ThreadingHTTPServer:
        """/metrics, /healthz (alive: threads, API server, NVML) and /readyz (and registered
        with the kubelet) on ``addr:port``."""
        self._http = self.metrics.serve(
            port,
            addr,
            routes={
                "/healthz": lambda: self._verdict(ready=False),
                "/readyz": lambda: self._verdict(ready=True),
            },
        )
        return self._http

    def start(self) -> None:
        self._spawn("slice-publisher", self.publisher.run, self._stop)
        self._spawn("health-events", self._watch_health)
        self._spawn("nvml-probe", self._probe_nvml)
        self._spawn("checkpoint-gc", self._collect_garbage)
        self._spawn("node-events", self.node_events.run, self._stop)
        self.servers.start()

    def stop(self) -> None:
        self._stop.set()
        self.publisher.trigger()  # wake it from its idle wait
        self.servers.stop()
        for t in self._threads:
            t.join(timeout=5)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        with contextlib.suppress(NvmlError):
            self._backend.close()
        self._gpu_locks.release()
        self._dir_lock.release()
        log.info("kubelet plugin stopped")

    def wait(self, stop: threading.Event) -> None:
        stop.wait()
