"""The kubelet-facing gRPC services (the only kubeletplugin module that imports grpc).

DRA v1 and v1beta1 are served on one socket, both delegating to ``NodePlugin`` (a prepared
share's ``share_id`` is answered where the version has the field: v1), and beside
them the device health stream ``v1alpha1.DRAResourceHealth`` (``health_stream``); the
registration service advertises ``v1.DRAPlugin`` first, then the health service.  Sockets:
stale files are removed before listening and on stop; the DRA socket is serving before the
registration socket exists, so the kubelet never sees an endpoint that is not ready.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from gpudra._proto import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    drahealth_v1alpha1_pb2,
    drahealth_v1alpha1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from gpudra.kubeletplugin.health_stream import HealthBroadcast
from gpudra.kubeletplugin.node import Budget, NodePlugin
from gpudra.kubeletplugin.prepare import ClaimRef

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
HEALTH_SERVICE = "v1alpha1.DRAResourceHealth"


# Enough workers that a prepare blocked on a hung API server (each bounded by the claim
# read timeout) never keeps an unprepare or a checkpoint-hit prepare waiting for a thread.
DRA_WORKERS = 64


def _refs(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in request.claims]


def budget_of(context: Any) -> Budget:
    """The call's deadline and cancellation, as the node plugin sees them."""
    remaining = context.time_remaining() if context is not None else None
    deadline = time.monotonic() + remaining if remaining is not None else None
    if context is None:
        return Budget(deadline=deadline)
    return Budget(deadline=deadline, cancelled=lambda: not context.is_active())


def _make_servicer(pb2: Any, base: type) -> type:
    # v1 answers which share of a device a claim got (consumable capacity); v1beta1 cannot
    shares = "share_id" in pb2.Device.DESCRIPTOR.fields_by_name

    class DraServicer(base):  # type: ignore[misc]
        def __init__(self, plugin: NodePlugin) -> None:
            self._plugin = plugin

        def NodePrepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802
            resp = pb2.NodePrepareResourcesResponse()
            for uid, outcome in self._plugin.prepare(_refs(request), budget_of(context)).items():
                entry = resp.claims[uid]
                if outcome.error:
                    entry.error = outcome.error
                    continue
                for d in outcome.devices:
                    device = entry.devices.add(
                        request_names=list(d.request_names),
                        pool_name=d.pool,
                        device_name=d.device,
                        cdi_device_ids=list(d.cdi_device_ids),
                    )
                    if shares and d.share_id:
                        device.share_id = d.share_id
            return resp

        def NodeUnprepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802
            resp = pb2.NodeUnprepareResourcesResponse()
            for uid, error in self._plugin.unprepare(_refs(request)).items():
                resp.claims[uid].error = error
            return resp

    return DraServicer


DraV1Servicer = _make_servicer(dra_v1_pb2, dra_v1_pb2_grpc.DRAPluginServicer)
DraV1beta1Servicer = _make_servicer(dra_v1beta1_pb2, dra_v1beta1_pb2_grpc.DRAPluginServicer)


class HealthServicer(drahealth_v1alpha1_pb2_grpc.DRAResourceHealthServicer):  # type: ignore[misc]
    """``NodeWatchResources``: the health set on open, on every change and every heartbeat."""

    def __init__(self, health: HealthBroadcast) -> None:
        self._health = health

    def NodeWatchResources(self, request: Any, context: Any) -> Any:  # noqa: N802
        pb2 = drahealth_v1alpha1_pb2
        log.info("kubelet opened the device health stream")
        for devices in self._health.watch(active=context.is_active):
            now = int(time.time())
            yield pb2.NodeWatchResourcesResponse(
                devices=[
                    pb2.DeviceHealth(
                        device=pb2.DeviceIdentifier(pool_name=d.pool, device_name=d.device),
                        health=pb2.HEALTHY if d.healthy else pb2.UNHEALTHY,
                        last_updated_time=now,
                        health_check_timeout_seconds=self._health.timeout_s,
                        message=d.message,
                    )
                    for d in devices
                ]
            )
        log.info("device health stream closed")


class RegistrationServicer(pluginregistration_v1_pb2_grpc.RegistrationServicer):  # type: ignore[misc]
    def __init__(self, *, driver: str, endpoint: Path, versions: tuple[str, ...]) -> None:
        self._driver = driver
        self._endpoint = endpoint
        self.versions = versions
        self.registered = threading.Event()
        self.last_error = ""

    def GetInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pluginregistration_v1_pb2.PluginInfo(
            type="DRAPlugin",
            name=self._driver,
            endpoint=str(self._endpoint),
            supported_versions=list(self.versions),
        )

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        if request.plugin_registered:
            log.info("kubelet registered driver %s", self._driver)
            self.registered.set()
            self.last_error = ""
        else:
            log.error("kubelet refused driver %s: %s", self._driver, request.error)
            self.registered.clear()
            self.last_error = request.error
        return pluginregistration_v1_pb2.RegistrationStatusResponse()


MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


def _listen(server: grpc.Server, socket_path: Path) -> None:
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
        raise OSError(
            f"socket path {socket_path} is {len(str(socket_path).encode())} bytes; unix sockets "
            f"allow at most {MAX_SOCKET_PATH}: choose a shorter --plugin-dir/--registry-dir"
        )
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    if server.add_insecure_port(f"unix://{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")


class PluginServers:
    """The DRA service server and the registration server, started in the right order."""

    def __init__(
        self,
        *,
        plugin: NodePlugin,
        driver: str,
        dra_socket: Path,
        reg_socket: Path,
        health: HealthBroadcast | None = None,
    ):
        self.dra_socket = dra_socket
        self.reg_socket = reg_socket
        self._health = health
        self._dra = grpc.server(futures.ThreadPoolExecutor(max_workers=DRA_WORKERS))
        dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(DraV1Servicer(plugin), self._dra)
        dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server(DraV1beta1Servicer(plugin), self._dra)
        versions: tuple[str, ...] = SUPPORTED_VERSIONS
        if health is not None:
            drahealth_v1alpha1_pb2_grpc.add_DRAResourceHealthServicer_to_server(
                HealthServicer(health), self._dra
            )
            versions = (*SUPPORTED_VERSIONS, HEALTH_SERVICE)
        self.registration = RegistrationServicer(
            driver=driver, endpoint=dra_socket, versions=versions
        )
        self._reg = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pluginregistration_v1_pb2_grpc.add_RegistrationServicer_to_server(
            self.registration, self._reg
        )

    def start(self) -> None:
        _listen(self._dra, self.dra_socket)
        self._dra.start()
        _listen(self._reg, self.reg_socket)  # only now can the kubelet find us
        self._reg.start()
        log.info(
            "serving %s on %s, registration on %s",
            "/".join(self.registration.versions),
            self.dra_socket,
            self.reg_socket,
        )

    def stop(self, grace_s: float = 2.0) -> None:
        self._reg.stop(grace_s).wait()
        if self._health is not None:
            self._health.close()  # ends open health streams, so the grace period is not waited
        self.reg_socket.unlink(missing_ok=True)
        self._dra.stop(grace_s).wait()
        self.dra_socket.unlink(missing_ok=True)
