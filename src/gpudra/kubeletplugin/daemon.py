"""The DRA node daemon's wiring: the node agent's pieces, the DRA service, and their order.

What happens to the node's GPUs over time is the node agent's (``gpudra.nodeagent``): the
fault tracker, the GPU watch (health events and the NVML probe, the only announcer of a
change), liveness and the guarded threads, the catalogue source.  This module wires the DRA
side to them and loops nowhere itself:

* start-up order: the plugin-directory lock (one daemon per directory), the GPU locks, the
  checkpoint and CDI (so the first prepare finds its state), then, in ``start``, the stray-MIG
  sweep (an explicit start-up step, on a one-shot thread: it runs once the server's version
  makes the GPU modes certain), the GPU watch, the slice publisher and its watch, garbage
  collection, Node Events, and the DRA service, and only then the registration socket;
* one listener on the GPU watch: a GPU's faults that changed become a republish with its
  devices' taints, a message on the kubelet's health stream (``health_stream``), an Event on
  the Node (``node_events``) and the GPU metrics;
* publishing and preparing read one node catalogue (``CatalogueSource``), so what is
  published is what can be prepared.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpudra.catalogue.catalogue import GpuMode, NodeCatalogue
from gpudra.cdi.fakedev import make_fake_dev_root
from gpudra.cdi.writer import CdiWriter
from gpudra.devices.inventory import Inventory
from gpudra.kube.client import KubeClient
from gpudra.kubeletplugin.checkpoint_store import CheckpointStore
from gpudra.kubeletplugin.grpc_server import PluginServers
from gpudra.kubeletplugin.health_stream import DeviceHealth, HealthBroadcast, device_health
from gpudra.kubeletplugin.node import NodePlugin
from gpudra.kubeletplugin.node_events import NodeEvents
from gpudra.kubeletplugin.recovery import rebuild
from gpudra.kubeletplugin.sharing.mps import MpsControl
from gpudra.kubeletplugin.strays import unclaimed_instances
from gpudra.metrics.node import NodeMetrics
from gpudra.nodeagent.agent import node_agent
from gpudra.nodeagent.catalogue_source import CatalogueSource
from gpudra.nodeagent.liveness import LivenessVerdict
from gpudra.nodeagent.locks import DirLock, GpuLocked, lock_served
from gpudra.nodeagent.watch import WatchReport
from gpudra.nvml.backend import GpuBackend, HealthEventKind
from gpudra.nvml.errors import NvmlError
from gpudra.resourceslices.builder import desired_slices
from gpudra.resourceslices.publisher import SlicePublisher
from gpudra.settings import KubeletPluginSettings

log = logging.getLogger(__name__)

SWEEP_RETRY_S = 5.0


def report_to_metrics(metrics: NodeMetrics, report: WatchReport) -> None:
    """The GPU metrics of one watch report: a counter per XID, a gauge per GPU."""
    inv = report.inventory
    for ev in report.events:
        if ev.kind is HealthEventKind.XID and ev.gpu_uuid:
            gpu = inv.gpu(ev.gpu_uuid)
            metrics.xid(gpu.index if gpu else -1, ev.xid or 0)
    for g in inv.gpus:
        faults = report.faults.get(g.uuid, ())
        metrics.gpu_health(g.index, g.uuid, not any(f.fatal for f in faults))


class KubeletPluginDaemon:
    def __init__(
        self,
        settings: KubeletPluginSettings,
        *,
        client: KubeClient,
        backend: GpuBackend,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.settings = s = settings
        self._client = client
        self._backend = backend
        self.metrics = metrics or NodeMetrics()
        self._http: ThreadingHTTPServer | None = None
        inv = backend.inventory()
        # an index this node lacks stops the daemon before it takes anything
        s.check_gpu_sets(
            len(inv.gpus), "dynamic_mig_gpus", "controller_managed_gpus", "shared_gpus"
        )
        agent = node_agent(
            backend,
            inv,
            s,
            api_unreachable_s=s.api_unreachable_s,
            lost_effect=s.lost_gpu_taint_effect,
        )
        self.liveness, self.faults, self.watch = agent.liveness, agent.faults, agent.watch
        self._take_node(inv)
        self.cdi = CdiWriter(s.cdi_dir)
        self.checkpoint = CheckpointStore(
            s.checkpoint_file,
            node_name=s.node_name,
            rebuild=lambda: rebuild(self.cdi, pool=s.node_name),
        )
        self._begin_boot(s.boot_id_file)
        if s.dev_root is not None:
            make_fake_dev_root(s.dev_root, [f"/dev/nvidia{g.minor}" for g in inv.gpus])
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
        )
        self._wire_dra()
        self.watch.subscribe(self._gpus_changed)

    def _take_node(self, inv: Inventory) -> None:
        """The plugin directory (one daemon per directory), then the GPUs it serves, locked
        against the device plugin; nothing held if either is taken."""
        s = self.settings
        s.plugin_path.mkdir(parents=True, exist_ok=True)
        self._dir_lock = DirLock(s.plugin_path)
        self._dir_lock.acquire()  # before anything touches the checkpoint or the sockets
        try:
            self._gpu_locks = lock_served(s.gpu_lock_path, inv, s.gpus, holder="kubelet-plugin")
        except GpuLocked:
            self._dir_lock.release()
            raise

    def _wire_dra(self) -> None:
        """The DRA side: prepare (on the catalogue), Node Events, the slice publisher, the
        kubelet's health stream and the gRPC servers."""
        s, client = self.settings, self._client
        self.plugin = NodePlugin(
            client=client,
            backend=self._backend,
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
        self.node_events = NodeEvents(
            client, node_name=s.node_name, lost_effect=s.lost_gpu_taint_effect
        )
        self.publisher = SlicePublisher(
            client,
            node_name=s.node_name,
            driver=s.driver_name,
            desired=self._desired,
            on_api=self.liveness.api_answered,
        )
        self.health_stream = HealthBroadcast(self._device_health, heartbeat_s=s.health_heartbeat_s)
        self.servers = PluginServers(
            plugin=self.plugin,
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

    # --- the GPU watch's listener --------------------------------------------------------------

    def _gpus_changed(self, report: WatchReport) -> None:
        """Metrics always; for each GPU whose faults changed, an Event on the Node; and a
        republish and a health-stream message when faults, events or NVML health changed."""
        report_to_metrics(self.metrics, report)
        for c in report.changes:
            self.node_events.gpu_changed(c.index, c.uuid, c.before, c.now)
        if report.changes or report.events or report.health_changed:
            self.publisher.trigger()
            self.health_stream.changed()

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

    # --- publishing -----------------------------------------------------------------------------

    def _desired(self, owner: dict[str, Any] | None) -> list[dict[str, Any]]:
        catalogue = self.catalogues.current()
        self.metrics.dynamic_mig.set(1 if catalogue.publishes_dynamic_mig else 0)
        self.metrics.shared(
            published=len(catalogue.gpus_in(GpuMode.SHARED)),
            fallback=len(catalogue.shared_refused),
        )
        return desired_slices(catalogue, driver=self.settings.driver_name, owner=owner)

    # --- the stray-MIG sweep: a start-up step -------------------------------------------------

    def sweep_strays(self) -> bool:
        """MIG instances on dynamic-MIG GPUs that no checkpointed claim holds were left by
        someone else (or by a crash between destroy and checkpoint): say so, and remove them
        when configured to.  Only once the server's version is known (it decides the GPU
        modes): False if it is not yet.  The catalogue (its inventory) is read before the
        checkpoint, so an instance a concurrent prepare creates is always seen with its
        record."""
        catalogue = self.catalogues.current()
        if not catalogue.capabilities.known:
            return False
        strays = unclaimed_instances(catalogue, self.checkpoint.claims().values())
        log.info(
            "MIG sweep: %d instance(s) on %d dynamic-MIG GPU(s) held by no claim",
            len(strays),
            len(catalogue.gpus_in(GpuMode.DYNAMIC_MIG)),
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
        return True

    def _sweep_when_known(self, stop: threading.Event) -> None:
        """The sweep, retried until the API server has told its version (then republish)."""
        while not stop.is_set():
            try:
                if self.sweep_strays():
                    self.publisher.trigger()
                    return
            except NvmlError as e:
                log.warning("MIG sweep: NVML does not answer (%s); retrying", e)
            except Exception:
                log.exception("MIG sweep failed; retrying")
            stop.wait(SWEEP_RETRY_S)

    # --- garbage collection ---------------------------------------------------------------------

    def _collect_garbage(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.gc_interval_s):
            try:
                released = self.plugin.collect_garbage()
            except Exception:
                log.exception("checkpoint garbage collection failed; retrying next interval")
                continue
            if released:
                self.metrics.released.inc(len(released))
                self.publisher.trigger()
            try:  # and the MPS daemons of prepared claims: one that died is started again
                self.plugin.check_mps()
            except Exception:
                log.exception("checking the MPS daemons failed; retrying next interval")

    # --- liveness and HTTP ----------------------------------------------------------------------

    def _verdict(self, ready: bool) -> tuple[bool, str]:
        v: LivenessVerdict
        if ready:
            self.liveness.registered(self.servers.registration.registered.is_set())
            v = self.liveness.ready()
        else:
            v = self.liveness.live()
        self.metrics.healthy.set(1 if self.liveness.live().ok else 0)
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

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        threads, stop = self.liveness.threads, self.liveness.stop
        # a start-up step, off this thread: it waits for the server's version, and
        # registration must not wait for the API server
        threads.spawn("mig-sweep", self._sweep_when_known, stop, oneshot=True)
        self.watch.start()
        threads.spawn("slice-publisher", self.publisher.run, stop)
        # its long poll ends only with the server's timeout: not waited for at stop
        threads.spawn("slice-watch", self.publisher.watch, stop, joined=False)
        threads.spawn("checkpoint-gc", self._collect_garbage, stop)
        threads.spawn("node-events", self.node_events.run, stop)
        self.servers.start()

    def stop(self) -> None:
        self.liveness.stop.set()
        self.publisher.trigger()  # wake it from its idle wait
        self.servers.stop()
        self.liveness.threads.join(timeout_s=5)
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
