"""The device-plugin gRPC side (the only deviceplugin module that imports grpc).

One ``DevicePlugin`` server per resource name, each on its own socket in the kubelet's
device-plugin dir (``gpudra-<name>.sock``, as NVIDIA's plugin runs one per resource), and
``Register`` calls to the kubelet's ``kubelet.sock``.  A server is serving before it is
registered, so the kubelet never dials an endpoint that is not ready.  ListAndWatch sends the
full list at once and again whenever the resource's IDs or their health change; it returns
when the server stops (the kubelet then reconnects to the new one).
"""

from __future__ import annotations

import logging
import re
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from gpudra._proto import deviceplugin_v1beta1_pb2 as pb
from gpudra._proto import deviceplugin_v1beta1_pb2_grpc as pb_grpc
from gpudra.cdi.writer import CdiWriteError
from gpudra.deviceplugin.allocate import AllocateError
from gpudra.deviceplugin.service import Advertised, DevicePluginService
from gpudra.metrics.device_plugin import DevicePluginMetrics

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
REGISTER_TIMEOUT_S = 5.0
MAX_SOCKET_PATH = 107
# worker threads per server: each ListAndWatch stream holds one for its life
WORKERS = 8


def socket_name(resource: str) -> str:
    """``nvidia.com/gpu`` -> ``gpudra-gpu.sock``; ``nvidia.com/mig-1g.10gb`` ->
    ``gpudra-mig-1g.10gb.sock``."""
    return "gpudra-" + re.sub(r"[^A-Za-z0-9_.-]", "_", resource.split("/", 1)[-1]) + ".sock"


def _devices(items: tuple[Advertised, ...]) -> Any:
    out = []
    for a in items:
        d = pb.Device(ID=a.id, health="Healthy" if a.healthy else "Unhealthy")
        if a.numa_node is not None:
            d.topology.nodes.add(ID=a.numa_node)
        out.append(d)
    return pb.ListAndWatchResponse(devices=out)


class DevicePluginServicer(pb_grpc.DevicePluginServicer):  # type: ignore[misc]
    def __init__(
        self, service: DevicePluginService, resource: str, metrics: DevicePluginMetrics
    ) -> None:
        self._service = service
        self._resource = resource
        self._metrics = metrics
        self.stopping = False

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True
        )

    def ListAndWatch(self, request: Any, context: Any) -> Any:  # noqa: N802
        version, items = self._service.advertised(self._resource)
        log.info("kubelet watching %s: %d device(s)", self._resource, len(items))
        yield _devices(items)
        while context.is_active() and not self.stopping:
            changed = self._service.wait_change(self._resource, version, timeout=1.0)
            if changed is None:
                continue
            version, items = changed
            bad = sum(1 for a in items if not a.healthy)
            log.info("%s: sending %d device(s), %d unhealthy", self._resource, len(items), bad)
            yield _devices(items)

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:  # noqa: N802
        resp = pb.PreferredAllocationResponse()
        try:
            for c in request.container_requests:
                ids = self._service.preferred(
                    self._resource,
                    list(c.available_deviceIDs),
                    list(c.must_include_deviceIDs),
                    c.allocation_size,
                )
                resp.container_responses.add(deviceIDs=ids)
                log.info(
                    "preferred %s: %d of %d available (must include %d): %s",
                    self._resource,
                    c.allocation_size,
                    len(c.available_deviceIDs),
                    len(c.must_include_deviceIDs),
                    ",".join(self._service.device_names(self._resource, ids)),
                )
        except LookupError as e:
            self._metrics.call("GetPreferredAllocation", ok=False)
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        self._metrics.call("GetPreferredAllocation", ok=True)
        return resp

    def Allocate(self, request: Any, context: Any) -> Any:  # noqa: N802
        containers = [list(c.devices_ids) for c in request.container_requests]
        try:
            answers = self._service.allocate(self._resource, containers)
        except (AllocateError, LookupError) as e:
            log.warning("Allocate %s %s refused: %s", self._resource, containers, e)
            self._metrics.call("Allocate", ok=False)
            # UNKNOWN, as a Go plugin's plain error: the pod's event reads as with NVIDIA's
            context.abort(grpc.StatusCode.UNKNOWN, str(e))
        except CdiWriteError as e:
            log.error("Allocate %s %s: %s", self._resource, containers, e)
            self._metrics.call("Allocate", ok=False)
            context.abort(grpc.StatusCode.INTERNAL, str(e))
        resp = pb.AllocateResponse()
        for a in answers:
            c = resp.container_responses.add()
            c.envs.update(a.envs)
            for name in a.cdi_devices:
                c.cdi_devices.add(name=name)
            for n in a.device_nodes:
                c.devices.add(
                    container_path=n.container_path,
                    host_path=n.host_path,
                    permissions=n.permissions,
                )
        log.info(
            "allocated %s: %s",
            self._resource,
            "; ".join(",".join(d.device for d in a.devices) for a in answers),
        )
        self._metrics.call("Allocate", ok=True)
        return resp

    def PreStartContainer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.PreStartContainerResponse()


class ResourceServer:
    """One resource's DevicePlugin server on its socket; ``start`` again after ``stop``."""

    def __init__(
        self,
        service: DevicePluginService,
        resource: str,
        plugin_dir: Path,
        metrics: DevicePluginMetrics,
    ) -> None:
        self.resource = resource
        self.socket = plugin_dir / socket_name(resource)
        self._service = service
        self._metrics = metrics
        self._server: grpc.Server | None = None
        self._servicer: DevicePluginServicer | None = None
        self._inode: int | None = None

    def start(self) -> None:
        self.stop()
        path = self.socket
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise OSError(
                f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter "
                "--kubelet-dir"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
        servicer = DevicePluginServicer(self._service, self.resource, self._metrics)
        pb_grpc.add_DevicePluginServicer_to_server(servicer, server)
        if server.add_insecure_port(f"unix://{path}") == 0:
            raise OSError(f"cannot listen on {path}")
        server.start()
        self._server, self._servicer = server, servicer
        self._inode = path.stat().st_ino

    def _owns_socket(self) -> bool:
        try:
            return self._inode is not None and self.socket.stat().st_ino == self._inode
        except FileNotFoundError:
            return False

    def serving(self) -> bool:
        """Started, and its socket file is still the one it listens on (the kubelet removes
        every socket in its dir when it starts)."""
        return self._server is not None and self._owns_socket()

    def stop(self, grace_s: float = 0.5) -> None:
        if self._servicer is not None:
            self._servicer.stopping = True
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None
            if self._owns_socket():
                self.socket.unlink(missing_ok=True)
        self._servicer = None

    def register(self, kubelet_socket: Path) -> None:
        """Register with the kubelet; grpc.RpcError or OSError when it is not there or refuses."""
        if not kubelet_socket.exists():
            raise OSError(f"no kubelet socket {kubelet_socket}")
        with grpc.insecure_channel(f"unix://{kubelet_socket}") as channel:
            pb_grpc.RegistrationStub(channel).Register(
                pb.RegisterRequest(
                    version=API_VERSION,
                    endpoint=self.socket.name,
                    resource_name=self.resource,
                    options=pb.DevicePluginOptions(
                        pre_start_required=False, get_preferred_allocation_available=True
                    ),
                ),
                timeout=REGISTER_TIMEOUT_S,
            )


def rpc_error_text(e: Exception) -> str:
    if isinstance(e, grpc.RpcError):
        return f"{e.code().name}: {e.details()}"
    return str(e)
