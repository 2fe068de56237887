"""The device-plugin kubelet stand-in against a tiny fake device plugin, over real unix sockets:
registration, ListAndWatch, the helper calls, restart, refusals, and the Node status patches
(through gpudra's recording fake client)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpudra._proto import deviceplugin_v1beta1_pb2 as pb2
from gpudra._proto import deviceplugin_v1beta1_pb2_grpc as pb2_grpc
from gpudra.kube.resources import NODES
from gpudra_testkit.harness.dpkubelet import (
    KUBELET_SOCKET,
    DevicePluginKubelet,
    PluginOptions,
    is_extended_resource_name,
    node_counts,
)
from gpudra_testkit.harness.waiting import wait_for
from tests.fakes.kube import FakeKubeClient

RESOURCE = "example.com/gpu"
NODE = "node-a"


class FakePlugin(pb2_grpc.DevicePluginServicer):  # type: ignore[misc]
    """Serves DevicePlugin on ``<dir>/<endpoint>``; sends the full list on every change."""

    def __init__(self, plugin_dir: Path, endpoint: str, devices: dict[str, str]) -> None:
        self.dir, self.endpoint = plugin_dir, endpoint
        self._cond = threading.Condition()
        self._devices = dict(devices)
        self._generation = 0
        self._server: grpc.Server | None = None
        self.streams_ended = 0
        self.pre_started: list[list[str]] = []

    def serve(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb2_grpc.add_DevicePluginServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix://{self.dir / self.endpoint}")
        self._server.start()

    def register(self, version: str = "v1beta1", resource: str = RESOURCE) -> None:
        with grpc.insecure_channel(f"unix://{self.dir / KUBELET_SOCKET}") as ch:
            pb2_grpc.RegistrationStub(ch).Register(
                pb2.RegisterRequest(
                    version=version,
                    endpoint=self.endpoint,
                    resource_name=resource,
                    options=pb2.DevicePluginOptions(get_preferred_allocation_available=True),
                ),
                timeout=5,
            )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def set_health(self, device: str, health: str) -> None:
        with self._cond:
            self._devices[device] = health
            self._generation += 1
            self._cond.notify_all()

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:
        return pb2.DevicePluginOptions(get_preferred_allocation_available=True)

    def ListAndWatch(self, request: Any, context: Any) -> Iterator[Any]:
        sent = -1
        try:
            while context.is_active():
                with self._cond:
                    if self._generation == sent:  # woken by set_health, or re-check is_active
                        self._cond.wait(timeout=0.05)
                    if self._generation == sent:
                        continue
                    sent, devs = self._generation, dict(self._devices)
                yield pb2.ListAndWatchResponse(
                    devices=[pb2.Device(ID=i, health=h) for i, h in devs.items()]
                )
        finally:
            self.streams_ended += 1

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:
        return pb2.PreferredAllocationResponse(
            container_responses=[
                pb2.ContainerPreferredAllocationResponse(
                    deviceIDs=(
                        list(r.must_include_deviceIDs)
                        + [d for d in r.available_deviceIDs if d not in r.must_include_deviceIDs]
                    )[: r.allocation_size]
                )
                for r in request.container_requests
            ]
        )

    def Allocate(self, request: Any, context: Any) -> Any:
        if any(not r.devices_ids for r in request.container_requests):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a container asked for no device")
        return pb2.AllocateResponse(
            container_responses=[
                pb2.ContainerAllocateResponse(envs={"FAKE_DEVICES": ",".join(r.devices_ids)})
                for r in request.container_requests
            ]
        )

    def PreStartContainer(self, request: Any, context: Any) -> Any:
        self.pre_started.append(list(request.devices_ids))
        return pb2.PreStartContainerResponse()


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dpk-", dir="/tmp"))  # short: sun_path is 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[DevicePluginKubelet]:
    with DevicePluginKubelet(plugin_dir) as k:
        yield k


@pytest.fixture
def plugin(plugin_dir: Path, kubelet: DevicePluginKubelet) -> Iterator[FakePlugin]:
    p = FakePlugin(plugin_dir, "fake.sock", {"gpu-0": "Healthy", "gpu-1": "Healthy"})
    p.serve()
    yield p
    p.stop()


def registered(kubelet: DevicePluginKubelet, plugin: FakePlugin) -> None:
    plugin.register()
    kubelet.wait_devices(RESOURCE, lambda d: len(d) == 2)


def test_start_removes_stale_sockets_only(plugin_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(plugin_dir / "old-plugin.sock"))
    stale.close()
    (plugin_dir / "kubelet_internal_checkpoint").write_text("{}")
    (plugin_dir / "sub.sock").mkdir()
    with DevicePluginKubelet(plugin_dir) as k:
        assert not (plugin_dir / "old-plugin.sock").exists()
        assert (plugin_dir / "kubelet_internal_checkpoint").is_file()
        assert (plugin_dir / "sub.sock").is_dir()
        assert k.socket.is_socket()
    assert not (plugin_dir / KUBELET_SOCKET).exists()


def test_registration_is_recorded_and_devices_land(
    kubelet: DevicePluginKubelet, plugin: FakePlugin
) -> None:
    plugin.register()
    reg = kubelet.wait_registered(RESOURCE)
    assert (reg.resource, reg.endpoint) == (RESOURCE, "fake.sock")
    assert reg.options == PluginOptions(
        pre_start_required=False, get_preferred_allocation_available=True
    )
    devs = kubelet.wait_devices(RESOURCE, lambda d: len(d) == 2)
    assert devs == {"gpu-0": "Healthy", "gpu-1": "Healthy"}
    t, resource, listed = kubelet.updates[0]
    assert (resource, listed) == (RESOURCE, devs)
    assert t >= reg.received
    assert kubelet.connected(RESOURCE)


def test_unhealthy_update_is_seen(kubelet: DevicePluginKubelet, plugin: FakePlugin) -> None:
    registered(kubelet, plugin)
    plugin.set_health("gpu-1", "Unhealthy")
    devs = kubelet.wait_devices(RESOURCE, lambda d: d.get("gpu-1") == "Unhealthy")
    assert devs == {"gpu-0": "Healthy", "gpu-1": "Unhealthy"}
    assert [u[2]["gpu-1"] for u in kubelet.updates] == ["Healthy", "Unhealthy"]
    assert kubelet.updates[0][0] < kubelet.updates[1][0]


def test_calls_round_trip(kubelet: DevicePluginKubelet, plugin: FakePlugin) -> None:
    registered(kubelet, plugin)
    resp = kubelet.allocate(RESOURCE, [["gpu-0"], ["gpu-1", "gpu-0"]])
    assert [dict(c.envs) for c in resp.container_responses] == [
        {"FAKE_DEVICES": "gpu-0"},
        {"FAKE_DEVICES": "gpu-1,gpu-0"},
    ]
    with pytest.raises(grpc.RpcError) as err:
        kubelet.allocate(RESOURCE, [[]])
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert kubelet.preferred(RESOURCE, ["gpu-0", "gpu-1"], ["gpu-1"], 1) == ["gpu-1"]
    assert kubelet.options(RESOURCE).get_preferred_allocation_available
    kubelet.pre_start(RESOURCE, ["gpu-0"])
    assert plugin.pre_started == [["gpu-0"]]
    with pytest.raises(LookupError):
        kubelet.allocate("example.com/other", [["x"]])


def test_restart_removes_sockets_and_takes_a_new_registration(
    plugin_dir: Path, kubelet: DevicePluginKubelet, plugin: FakePlugin
) -> None:
    registered(kubelet, plugin)
    first = kubelet.wait_registered(RESOURCE)
    before = kubelet.socket.stat()
    t = kubelet.restart()
    assert t > first.received
    assert not (plugin_dir / "fake.sock").exists()
    after = kubelet.socket.stat()
    assert kubelet.socket.is_socket()
    assert (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)
    assert not kubelet.connected(RESOURCE)
    wait_for("the old stream to end", lambda: plugin.streams_ended == 1, 5)
    plugin.stop()  # what a plugin does when kubelet.sock is recreated: serve again, register
    plugin.serve()
    plugin.register()
    again = kubelet.wait_registered(RESOURCE, after=t)
    assert again.received > t > first.received
    assert [r.received for r in kubelet.registrations] == [first.received, again.received]
    wait_for("the new stream", lambda: kubelet.connected(RESOURCE), 5)
    assert len(kubelet.updates) == 2


def test_a_new_registration_replaces_the_old_endpoint(
    plugin_dir: Path, kubelet: DevicePluginKubelet, plugin: FakePlugin
) -> None:
    registered(kubelet, plugin)
    second = FakePlugin(plugin_dir, "fake2.sock", {"gpu-9": "Healthy"})
    second.serve()
    try:
        second.register()
        assert kubelet.wait_devices(RESOURCE, lambda d: "gpu-9" in d) == {"gpu-9": "Healthy"}
        wait_for("the old stream to be closed", lambda: plugin.streams_ended == 1, 5)
        assert [r.endpoint for r in kubelet.registrations] == ["fake.sock", "fake2.sock"]
        assert kubelet.connected(RESOURCE)
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("version", "resource", "message"),
    [
        pytest.param("v1alpha", RESOURCE, 'requested API version "v1alpha"', id="wrong-version"),
        pytest.param("", RESOURCE, 'requested API version ""', id="no-version"),
        pytest.param("v1beta1", "gpu", 'the ResourceName "gpu" is invalid', id="not-extended"),
    ],
)
def test_a_bad_registration_is_refused(
    kubelet: DevicePluginKubelet, plugin: FakePlugin, version: str, resource: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        plugin.register(version=version, resource=resource)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")
    assert kubelet.registrations == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("nvidia.com/gpu", True),
        ("example.com/gpu.shared", True),
        ("gpu", False),
        ("kubernetes.io/gpu", False),
        ("requests.example.com/gpu", False),
        ("example.com/a/b", False),
        ("Example.com/gpu", False),
    ],
)
def test_extended_resource_names(name: str, ok: bool) -> None:
    assert is_extended_resource_name(name) is ok


@pytest.mark.parametrize(
    ("streaming", "removed", "counts"),
    [
        pytest.param(True, False, (3, 2), id="streaming"),
        pytest.param(False, False, (3, 0), id="disconnected-all-unhealthy"),
        pytest.param(False, True, (0, 0), id="removed-after-grace"),
    ],
)
def test_node_counts(streaming: bool, removed: bool, counts: tuple[int, int]) -> None:
    devs = {"a": "Healthy", "b": "Unhealthy", "c": "Healthy"}
    assert node_counts(devs, streaming=streaming, removed=removed) == counts


def node_status(fake: FakeKubeClient) -> tuple[dict[str, str], dict[str, str]]:
    status = fake.stored(NODES, NODE)["status"]
    return dict(status["capacity"]), dict(status["allocatable"])


@pytest.mark.parametrize(
    ("grace_s", "after_end"),
    [
        pytest.param(300.0, ("2", "0"), id="within-grace"),
        pytest.param(0.0, ("0", "0"), id="grace-expired"),
    ],
)
def test_node_status_follows_the_stream(
    plugin_dir: Path, grace_s: float, after_end: tuple[str, str]
) -> None:
    fake = FakeKubeClient()
    fake.seed(
        NODES,
        {
            "metadata": {"name": NODE},
            "status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}},
        },
    )
    plugin = FakePlugin(plugin_dir, "fake.sock", {"gpu-0": "Healthy", "gpu-1": "Healthy"})
    with DevicePluginKubelet(plugin_dir, client=fake, node_name=NODE, stop_grace_s=grace_s) as k:
        plugin.serve()
        try:
            plugin.register()

            def counts() -> tuple[str | None, str | None]:
                cap, alloc = node_status(fake)
                return cap.get(RESOURCE), alloc.get(RESOURCE)

            wait_for("capacity 2/2", lambda: counts() == ("2", "2"), 5)
            plugin.set_health("gpu-0", "Unhealthy")
            wait_for("allocatable 1", lambda: counts() == ("2", "1"), 5)
            assert node_status(fake) == (
                {"cpu": "4", RESOURCE: "2"},
                {"cpu": "4", RESOURCE: "1"},
            )
        finally:
            plugin.stop()
        wait_for(f"capacity/allocatable {after_end}", lambda: counts() == after_end, 5)
        assert not k.connected(RESOURCE)
        assert all(w.verb == "patch" and w.subresource == "status" for w in fake.writes)
        assert fake.writes[0].body == {  # only the plugin's resource: the rest is kept
            "status": {"capacity": {RESOURCE: "2"}, "allocatable": {RESOURCE: "2"}}
        }
