"""A stand-in for the kubelet's device manager, for device-plugin tests that need many nodes or
precise fault timing (the real kubelet is used elsewhere).  It speaks the real v1beta1
device-plugin contract over real unix sockets.

What it mirrors of ``pkg/kubelet/cm/devicemanager`` in https://github.com/kubernetes/kubernetes
(``manager.go``, ``endpoint.go``, ``plugin/v1beta1/{server,client}.go``):

* At start it creates the socket directory and removes every unix socket in it (not other
  files, not directories: ``CleanupPluginDirectory``), then serves ``v1beta1.Registration`` on
  ``<dir>/kubelet.sock``.
* ``Register`` refuses a version other than ``v1beta1`` and a resource name that is not an
  extended resource, with the kubelet's messages.  A registration for a resource that already
  has a plugin replaces the old endpoint.
* For each registration it dials ``<dir>/<endpoint>`` (10 s), calls GetDevicePluginOptions and
  keeps the ListAndWatch stream open; every message is the full device list.
* Node status, when given a client and a node: ``capacity`` is the number of devices and
  ``allocatable`` the number of Healthy ones (``GetCapacity``).  When a stream ends the
  kubelet marks the resource's devices unhealthy (``PluginDisconnected``), so capacity stays and
  allocatable is 0; after ``endpointStopGracePeriod`` (5 min, ``stop_grace_s`` here) without a
  new registration the resource is removed and capacity is written as 0 (the node status
  setter's "Set capacity for removed resource to 0").  ``stop_grace_s=0`` zeroes both at once.
* ``restart()`` is a kubelet restart: every socket in the directory goes (the plugins' too, which
  is how plugins notice, kubernetes/kubernetes#118534), a new ``kubelet.sock`` appears, and each
  known resource starts stopped (the checkpoint's devices, all unhealthy) until its plugin
  registers again.

Where it differs, on purpose: it connects to the plugin in a background thread after
``Register`` has returned (the kubelet dials and fetches the options inside the Register call,
so its Register fails when the plugin is not serving); it patches the Node as soon as its view
changes (the kubelet's node status loop runs every 10 s); a refused registration answers
INVALID_ARGUMENT (the kubelet returns a plain Go error, which gRPC sends as UNKNOWN); it closes
a replaced plugin's stream itself (the kubelet lets it end); it keeps no checkpoint file, only
the last device list of each resource in memory.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from gpudra._proto import deviceplugin_v1beta1_pb2 as pb2
from gpudra._proto import deviceplugin_v1beta1_pb2_grpc as pb2_grpc
from gpudra.kube import KubeClient, KubeError, resources
from gpudra_testkit.harness.waiting import wait_for

log = logging.getLogger(__name__)

VERSION = "v1beta1"
SUPPORTED_VERSIONS = ("v1beta1",)
KUBELET_SOCKET = "kubelet.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
CONNECT_TIMEOUT_S = 10.0  # the kubelet's dial timeout (plugin/v1beta1/client.go)
CALL_TIMEOUT_S = 30.0  # KubeletPreStartContainerRPCTimeoutInSecs; used for every helper call
STOP_GRACE_S = 300.0  # endpointStopGracePeriod (devicemanager/endpoint.go)
REFUSAL_CODE = grpc.StatusCode.INVALID_ARGUMENT  # the real kubelet's plain error reads UNKNOWN

_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_extended_resource_name(name: str) -> bool:
    """``v1helper.IsExtendedResourceName``: ``domain/name``, not in kubernetes.io, and a valid
    qualified name once prefixed with ``requests.``."""
    if "/" not in name or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    prefix, _, short = f"requests.{name}".partition("/")
    return (
        "/" not in short
        and len(prefix) <= 253
        and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
        and len(short) <= 63
        and _QUALIFIED_NAME.fullmatch(short) is not None
    )


def node_counts(devices: dict[str, str], *, streaming: bool, removed: bool) -> tuple[int, int]:
    """(capacity, allocatable) of one resource as the kubelet reports it: all devices and the
    healthy ones while a plugin streams; all devices and none while it does not; 0 and 0 once
    the resource is removed."""
    if removed:
        return 0, 0
    if not streaming:
        return len(devices), 0
    return len(devices), sum(h == HEALTHY for h in devices.values())


@dataclass(frozen=True)
class PluginOptions:
    pre_start_required: bool
    get_preferred_allocation_available: bool

    @classmethod
    def from_message(cls, msg: Any) -> PluginOptions:
        return cls(
            pre_start_required=bool(msg.pre_start_required),
            get_preferred_allocation_available=bool(msg.get_preferred_allocation_available),
        )


@dataclass(frozen=True)
class Registration:
    """One accepted Register call; ``received`` is ``time.monotonic()`` on arrival."""

    resource: str
    endpoint: str
    options: PluginOptions
    received: float


Update = tuple[float, str, dict[str, str]]  # (monotonic time, resource, {device ID: health})


class _Connection:
    """The kubelet's client of one registered plugin: a channel and the stream thread."""

    def __init__(self, registration: Registration, socket: Path) -> None:
        self.registration = registration
        self.socket = socket
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = pb2_grpc.DevicePluginStub(self.channel)
        self.options: PluginOptions | None = None
        self.streaming = False  # a device list has arrived on this connection
        self.thread: threading.Thread | None = None

    def close(self) -> None:
        self.channel.close()  # cancels the stream; its thread then ends


class _RegistrationServicer(pb2_grpc.RegistrationServicer):  # type: ignore[misc]
    def __init__(self, kubelet: DevicePluginKubelet) -> None:
        self._kubelet = kubelet

    def Register(self, request: Any, context: Any) -> Any:  # noqa: N802
        received = time.monotonic()
        error = self._kubelet._register(request, received)
        if error:
            context.abort(REFUSAL_CODE, error)
        return pb2.Empty()


class DevicePluginKubelet:
    """See the module docstring.  Thread-safe: the gRPC server threads, the stream threads and
    the grace timers change state under one lock; Node patches are serialised by another."""

    def __init__(
        self,
        device_plugin_dir: Path,
        *,
        client: KubeClient | None = None,
        node_name: str | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.dir = Path(device_plugin_dir)
        self.socket = self.dir / KUBELET_SOCKET
        self._client = client
        self._node_name = node_name
        self._stop_grace_s = stop_grace_s
        self._lock = threading.Lock()
        self._node_lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._registrations: list[Registration] = []
        self._updates: list[Update] = []
        self._conns: dict[str, _Connection] = {}
        self._devices: dict[str, dict[str, str]] = {}  # last list per resource, kept on stop
        self._stopped: dict[str, float] = {}  # resource -> when its endpoint stopped
        self._removed: set[str] = set()
        self._timers: dict[str, threading.Timer] = {}
        self._patched: dict[str, tuple[int, int]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_sockets()
        self._serve()

    def restart(self) -> float:
        """A kubelet restart; returns ``time.monotonic()`` once the new kubelet.sock exists."""
        self._stop_server()
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        self._close(conns)
        self._remove_sockets()
        with self._lock:
            now = time.monotonic()
            for resource in self._devices:
                if resource not in self._removed:
                    self._stop_endpoint(resource, now)
        self._sync_node()
        return self._serve()

    def stop(self) -> None:
        """Stop serving, drop every plugin connection and timer, remove kubelet.sock."""
        self._stop_server()
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        self._close(conns)
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> DevicePluginKubelet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what tests read -------------------------------------------------------------------

    @property
    def registrations(self) -> list[Registration]:
        with self._lock:
            return list(self._registrations)

    @property
    def updates(self) -> list[Update]:
        with self._lock:
            return [(t, r, dict(d)) for t, r, d in self._updates]

    def devices(self, resource: str) -> dict[str, str]:
        """The last device list the resource's plugin sent ({} before any); kept after its
        stream ends, as the kubelet keeps the devices (unhealthy) in its checkpoint."""
        with self._lock:
            return dict(self._devices.get(resource, {}))

    def connected(self, resource: str) -> bool:
        """Whether a plugin for ``resource`` is registered and its stream has delivered."""
        with self._lock:
            conn = self._conns.get(resource)
            return conn is not None and conn.streaming

    def wait_registered(
        self, resource: str, after: float = 0.0, timeout: float = 10.0
    ) -> Registration:
        """The first registration of ``resource`` received after monotonic time ``after``."""

        def check() -> list[Registration]:
            with self._lock:
                return [
                    r for r in self._registrations if r.resource == resource and r.received > after
                ]

        what = f"a registration of {resource} after t={after:.3f}"
        found: list[Registration] = wait_for(what, check, timeout)
        return found[0]

    def wait_devices(
        self,
        resource: str,
        predicate: Callable[[dict[str, str]], bool],
        timeout: float = 10.0,
    ) -> dict[str, str]:
        """The first device list of ``resource`` (once one arrived) that ``predicate`` accepts."""

        def check() -> tuple[dict[str, str]] | None:
            with self._lock:
                devs = dict(self._devices[resource]) if resource in self._devices else None
            return (devs,) if devs is not None and predicate(devs) else None

        found: tuple[dict[str, str]] = wait_for(f"devices of {resource}", check, timeout)
        return found[0]

    # --- calls the kubelet makes to a plugin ------------------------------------------------

    def options(self, resource: str, *, timeout: float = CALL_TIMEOUT_S) -> PluginOptions:
        """GetDevicePluginOptions, asked again now."""
        return PluginOptions.from_message(
            self._stub(resource).GetDevicePluginOptions(pb2.Empty(), timeout=timeout)
        )

    def allocate(
        self, resource: str, container_ids: list[list[str]], *, timeout: float = CALL_TIMEOUT_S
    ) -> Any:
        """Allocate, one container request per list of IDs; the AllocateResponse message.
        gRPC errors are raised as `grpc.RpcError`."""
        request = pb2.AllocateRequest(
            container_requests=[
                pb2.ContainerAllocateRequest(devices_ids=ids) for ids in container_ids
            ]
        )
        return self._stub(resource).Allocate(request, timeout=timeout)

    def preferred(
        self,
        resource: str,
        available: list[str],
        must_include: list[str],
        size: int,
        *,
        timeout: float = CALL_TIMEOUT_S,
    ) -> list[str]:
        """GetPreferredAllocation for one container (called whatever the plugin's options say,
        unlike the kubelet, so a test can check the answer)."""
        request = pb2.PreferredAllocationRequest(
            container_requests=[
                pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available,
                    must_include_deviceIDs=must_include,
                    allocation_size=size,
                )
            ]
        )
        resp = self._stub(resource).GetPreferredAllocation(request, timeout=timeout)
        return list(resp.container_responses[0].deviceIDs)

    def pre_start(self, resource: str, ids: list[str], *, timeout: float = CALL_TIMEOUT_S) -> None:
        """PreStartContainer (called whatever ``pre_start_required`` says)."""
        self._stub(resource).PreStartContainer(
            pb2.PreStartContainerRequest(devices_ids=ids), timeout=timeout
        )

    def _stub(self, resource: str) -> Any:
        with self._lock:
            conn = self._conns.get(resource)
        if conn is None:
            raise LookupError(f"no device plugin is registered for {resource}")
        return conn.stub

    # --- the Registration server and the plugin connections ----------------------------------

    def _serve(self) -> float:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb2_grpc.add_RegistrationServicer_to_server(_RegistrationServicer(self), server)
        self.socket.unlink(missing_ok=True)
        if server.add_insecure_port(f"unix://{self.socket}") == 0:
            raise OSError(f"cannot listen on {self.socket}")
        server.start()
        self._server = server
        return time.monotonic()

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()
        self.socket.unlink(missing_ok=True)

    def _remove_sockets(self) -> None:
        for path in self.dir.iterdir():
            if path.is_socket():  # follows links, as os.Stat does; a directory is never one
                path.unlink(missing_ok=True)

    def _register(self, request: Any, received: float) -> str:
        """Record and connect an accepted registration; the refusal message otherwise."""
        resource = str(request.resource_name)
        if request.version not in SUPPORTED_VERSIONS:
            return (
                f"requested API version {json.dumps(request.version)} is not supported by "
                f"kubelet. Supported versions are {json.dumps(list(SUPPORTED_VERSIONS))}"
            )
        if not is_extended_resource_name(resource):
            return f"the ResourceName {json.dumps(resource)} is invalid"
        reg = Registration(
            resource=resource,
            endpoint=str(request.endpoint),
            options=PluginOptions.from_message(request.options),
            received=received,
        )
        conn = _Connection(reg, self.dir / reg.endpoint)
        with self._lock:
            self._registrations.append(reg)
            old = self._conns.get(resource)
            self._conns[resource] = conn
            self._stopped.pop(resource, None)
            self._removed.discard(resource)
            timer = self._timers.pop(resource, None)
            thread = conn.thread = threading.Thread(
                target=self._run, args=(conn,), name=f"dp-stream-{resource}", daemon=True
            )
        if timer is not None:
            timer.cancel()
        if old is not None:
            old.close()
        thread.start()
        log.info("registered %s at %s", resource, conn.socket)
        return ""

    def _run(self, conn: _Connection) -> None:
        resource = conn.registration.resource
        try:
            opts = conn.stub.GetDevicePluginOptions(
                pb2.Empty(), timeout=CONNECT_TIMEOUT_S, wait_for_ready=True
            )
            with self._lock:
                conn.options = PluginOptions.from_message(opts)
            for resp in conn.stub.ListAndWatch(pb2.Empty()):
                t = time.monotonic()
                devs = {str(d.ID): str(d.health) for d in resp.devices}
                with self._lock:
                    if self._conns.get(resource) is not conn:
                        break
                    conn.streaming = True
                    self._devices[resource] = devs
                    self._updates.append((t, resource, dict(devs)))
                self._sync_node()
        except grpc.RpcError as e:
            log.info("ListAndWatch of %s ended: %s", resource, e)
        except ValueError as e:  # the channel was closed before a call began
            log.info("connection to %s closed: %s", resource, e)
        with self._lock:
            if self._conns.get(resource) is not conn:
                return  # replaced, restarted or stopped: whoever did that owns the state
            del self._conns[resource]
            self._stop_endpoint(resource, time.monotonic())
        conn.close()
        self._sync_node()

    def _stop_endpoint(self, resource: str, now: float) -> None:
        """``PluginDisconnected``: devices unhealthy, removed after the grace period.  Under the
        lock."""
        self._stopped[resource] = now
        old = self._timers.pop(resource, None)
        if old is not None:
            old.cancel()
        if self._stop_grace_s <= 0:
            self._removed.add(resource)
            return
        timer = threading.Timer(self._stop_grace_s, self._grace_expired, (resource, now))
        timer.daemon = True
        self._timers[resource] = timer
        timer.start()

    def _grace_expired(self, resource: str, stopped_at: float) -> None:
        with self._lock:
            if self._stopped.get(resource) != stopped_at or resource in self._conns:
                return
            self._timers.pop(resource, None)
            self._removed.add(resource)
        self._sync_node()

    def _close(self, conns: list[_Connection]) -> None:
        for conn in conns:
            conn.close()
        for conn in conns:
            if conn.thread is not None and conn.thread is not threading.current_thread():
                conn.thread.join(timeout=CONNECT_TIMEOUT_S)

    # --- the Node ----------------------------------------------------------------------------

    def _sync_node(self) -> None:
        """Patch the Node's capacity and allocatable for every known resource whose counts
        changed since the last successful patch (level-triggered: read under the patch lock,
        so the last patch carries the latest state)."""
        if self._client is None or self._node_name is None:
            return
        with self._node_lock:
            with self._lock:
                want = {
                    r: node_counts(
                        devs,
                        streaming=r in self._conns and self._conns[r].streaming,
                        removed=r in self._removed,
                    )
                    for r, devs in self._devices.items()
                }
            changed = {r: c for r, c in want.items() if self._patched.get(r) != c}
            if not changed:
                return
            patch = {
                "status": {
                    "capacity": {r: str(c) for r, (c, _) in changed.items()},
                    "allocatable": {r: str(a) for r, (_, a) in changed.items()},
                }
            }
            try:
                self._client.patch_status(resources.NODES, self._node_name, patch)
            except KubeError as e:
                log.warning("patching node %s status failed: %s", self._node_name, e)
                return
            self._patched.update(changed)
