"""The node daemon (the real process pieces: gRPC server, HTTP endpoint, threads, mock GPUs)
when what it depends on misbehaves: an API server that accepts connections and never
answers, NVML that hangs, a thread that dies, a second daemon on the same directory, a MIG
instance that is in use."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest

from gpudra._proto import dra_v1_pb2, dra_v1_pb2_grpc
from gpudra.catalogue.catalogue import build_catalogue
from gpudra.catalogue.gpuset import GpuSetError
from gpudra.cdi.writer import CdiWriter
from gpudra.kube.client import KubeClient
from gpudra.kube.objects import ObjectList
from gpudra.kubeletplugin.checkpoint_store import CheckpointStore
from gpudra.kubeletplugin.daemon import KubeletPluginDaemon
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.nodeagent.locks import DirLocked
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.nvml.real import RealBackend
from gpudra.resourceslices.builder import desired_slices
from gpudra.resourceslices.publisher import SlicePublisher
from gpudra.settings import KubeletPluginSettings
from gpudra_testkit.harness.waiting import wait_for
from tests.unit.kubeletplugin.scenarios import claim, result
from tests.unit.nvml.fake_pynvml import switched

NODE = "node-a"
KUBELET_DEADLINE_S = 45.0


@dataclass
class BlackHole:
    """A TCP listener that accepts every connection, reads the request, and never answers."""

    sock: socket.socket
    paths: list[str] = field(default_factory=list)
    conns: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(65536).split(b"\r\n", 1)[0].decode()
        except OSError:
            return
        self.paths.append(first)

    def claim_reads(self) -> int:
        return sum("/resourceclaims/" in p for p in self.paths)


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    hole = BlackHole(sock)
    threading.Thread(target=hole.serve, daemon=True).start()
    yield hole
    sock.close()
    for c in hole.conns:
        c.close()


@pytest.fixture
def client(tmp_path: Path, black_hole: BlackHole) -> Iterator[KubeClient]:
    """gpudra's API client pointed at the black hole."""
    client = KubeClient.from_kubeconfig(kubeconfig(tmp_path, black_hole.port))
    yield client
    client.close()


def kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
"""
    )
    return path


def settings(tmp_path: Path, **kw: Any) -> KubeletPluginSettings:
    return KubeletPluginSettings(
        node_name=NODE,
        backend="mock",
        profile=kw.pop("profile", "dgx-h100"),
        plugin_dir=tmp_path / "plugin",
        registry_dir=tmp_path / "registry",
        cdi_dir=tmp_path / "cdi",
        mock_state_file=tmp_path / "mock-state.json",
        boot_id_file=tmp_path / "boot_id",
        **kw,
    )


def prepared_claim(uid: str, device: str, uuid: str) -> PreparedClaim:
    return PreparedClaim(
        uid=uid,
        namespace="ns",
        name=uid,
        state="prepared",
        devices=(
            PreparedDevice(
                request_names=("gpus",),
                pool=NODE,
                device=device,
                cdi_device_ids=(f"k8s.gpu.gpudra.io/claim={uid}-{device}",),
                uuid=uuid,
            ),
        ),
    )


def dra_stub(daemon: KubeletPluginDaemon) -> Any:
    channel = grpc.insecure_channel(f"unix://{daemon.settings.dra_socket}")
    return dra_v1_pb2_grpc.DRAPluginStub(channel)


def claims(*uids: str) -> list[Any]:
    return [dra_v1_pb2.Claim(namespace="ns", name=u, uid=u) for u in uids]


def healthz(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def test_a_hung_api_server_neither_blocks_unprepare_nor_outlives_the_kubelet_deadline(
    tmp_path: Path, black_hole: BlackHole, client: KubeClient
) -> None:
    s = settings(tmp_path)
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=s.mock_state_file)
    gpus = backend.inventory().gpus
    # two claims prepared before the API server hung: one to unprepare, one the kubelet asks
    # to prepare again (answered from the checkpoint, no API call needed)
    s.plugin_path.mkdir(parents=True)
    store = CheckpointStore(s.checkpoint_file, node_name=NODE)
    for uid, i in (("held-0", 0), ("held-1", 1)):
        store.put(prepared_claim(uid, f"gpu-{i}", gpus[i].uuid))
        CdiWriter(s.cdi_dir).write(uid, {"cdiVersion": "0.6.0", "kind": "k8s.gpu.gpudra.io/claim"})
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    daemon.start()
    try:
        stub = dra_stub(daemon)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=9) as pool:
            hung = [
                pool.submit(
                    stub.NodePrepareResources,
                    dra_v1_pb2.NodePrepareResourcesRequest(claims=claims(f"new-{i}")),
                    timeout=KUBELET_DEADLINE_S,
                )
                for i in range(9)
            ]
            wait_for("prepares hang", lambda: black_hole.claim_reads() >= 9, timeout=10)

            t0 = time.monotonic()
            un = stub.NodeUnprepareResources(
                dra_v1_pb2.NodeUnprepareResourcesRequest(claims=claims("held-0")),
                timeout=KUBELET_DEADLINE_S,
            )
            unprepare_s = time.monotonic() - t0
            t0 = time.monotonic()
            hit = stub.NodePrepareResources(
                dra_v1_pb2.NodePrepareResourcesRequest(claims=claims("held-1")),
                timeout=KUBELET_DEADLINE_S,
            )
            hit_s = time.monotonic() - t0
            answers = [f.result() for f in hung]
        total_s = time.monotonic() - started
    finally:
        daemon.stop()
    assert un.claims["held-0"].error == "" and unprepare_s < 5, unprepare_s
    assert not hit.claims["held-1"].error and hit_s < 5, hit_s
    for i, a in enumerate(answers):
        assert a.claims[f"new-{i}"].error, "a prepare against a hung API server succeeded"
    assert total_s < KUBELET_DEADLINE_S, f"prepares answered after {total_s:.1f}s"


def test_healthz_fails_while_the_api_server_does_not_answer_and_while_nvml_hangs(
    tmp_path: Path, black_hole: BlackHole, client: KubeClient
) -> None:
    s = settings(tmp_path, api_unreachable_s=1.0, nvml_wedged_s=1.0, nvml_probe_interval_s=0.2)
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=s.mock_state_file)
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    port = daemon.serve_http(0, "127.0.0.1").server_address[1]
    daemon.start()
    try:
        wait_for(
            "/healthz reports the hung API server",
            lambda: "the API server has not answered" in healthz(port)[1],
            timeout=15,
        )
        assert healthz(port)[0] == 503
        assert healthz(port, "/readyz")[0] == 503
        backend.hang(30)
        wait_for(
            "/healthz reports hanging NVML",
            lambda: "NVML has not completed a call" in healthz(port)[1],
            timeout=15,
        )
        assert "gpudra_node_healthy 0.0" in healthz(port, "/metrics")[1]
    finally:
        backend.hang(0)
        daemon.stop()


class DeadEvents(MockBackend):
    def wait_health_event(self, timeout_s: float) -> Any:
        raise SystemExit("the health-event loop is gone")


def test_a_background_thread_that_dies_makes_the_daemon_unhealthy(
    tmp_path: Path, black_hole: BlackHole, client: KubeClient
) -> None:
    s = settings(tmp_path)
    backend = DeadEvents(load_machine("dgx-h100"), node_name=NODE, state_file=s.mock_state_file)
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)
    port = daemon.serve_http(0, "127.0.0.1").server_address[1]
    daemon.start()
    try:
        wait_for("/healthz fails", lambda: healthz(port)[0] == 503, timeout=10)
        assert "thread health-events died: SystemExit" in healthz(port)[1]
    finally:
        daemon.stop()


def test_a_second_daemon_on_the_same_plugin_dir_stops_with_a_clear_message(
    tmp_path: Path, black_hole: BlackHole, client: KubeClient
) -> None:
    s = settings(tmp_path)
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=s.mock_state_file)
    first = KubeletPluginDaemon(s, client=client, backend=backend)
    first.start()
    try:
        with pytest.raises(DirLocked, match=r"another gpudra node daemon .* is running"):
            KubeletPluginDaemon(s, client=client, backend=backend)
        assert s.dra_socket.exists() and s.registration_socket.exists()
        assert s.checkpoint_file.exists() or not list(s.plugin_path.glob("checkpoint*"))
    finally:
        first.stop()
    # the lock goes with its holder: a successor starts
    KubeletPluginDaemon(s, client=client, backend=backend).stop()


def test_remove_unknown_mig_leaves_an_instance_in_use_and_starts(tmp_path: Path) -> None:
    s = settings(tmp_path, profile="dgx-h100-mig", dynamic_mig_gpus="all", remove_unknown_mig=True)
    backend = MockBackend(
        load_machine("dgx-h100-mig"), node_name=NODE, state_file=s.mock_state_file
    )
    gpu = backend.inventory().gpus[0].uuid
    busy = backend.create_mig_device(gpu, "1g.10gb", 0)
    idle = backend.create_mig_device(gpu, "1g.10gb", 1)
    backend.run_process(busy.uuid)
    daemon = KubeletPluginDaemon(s, client=FlakyClient(), backend=backend)  # type: ignore[arg-type]
    try:
        assert daemon.sweep_strays()  # a start-up step, once the GPU modes are certain
    finally:
        daemon.stop()
    left = {m.uuid for m in backend.inventory().mig_devices}
    assert busy.uuid in left and idle.uuid not in left


def test_on_a_1_34_server_dynamic_mig_gpus_are_static_for_publishing_sweeping_and_preparing(
    tmp_path: Path,
) -> None:
    """1.34 has no partitionable-device layout: the GPUs asked for in dynamic mode publish
    their existing instances (static MIG).  Those instances are the published devices: the
    sweep must leave them, and prepare must resolve their names to them."""
    s = settings(tmp_path, profile="dgx-h100-mig", dynamic_mig_gpus="all", remove_unknown_mig=True)
    backend = MockBackend(
        load_machine("dgx-h100-mig"), node_name=NODE, state_file=s.mock_state_file
    )
    gpu = backend.inventory().gpus[0].uuid
    made = [
        backend.create_mig_device(gpu, "3g.40gb", 4),
        backend.create_mig_device(gpu, "1g.10gb", 0),
    ]
    client = FlakyClient(minor=34)
    daemon = KubeletPluginDaemon(s, client=client, backend=backend)  # type: ignore[arg-type]
    try:
        assert daemon.sweep_strays()
        daemon.publisher.sync()
        published = {
            d["name"]: d["attributes"].get("uuid", {}).get("string")
            for sl in client.created
            for d in sl["spec"].get("devices", [])
        }
        assert published == {
            "gpu-0-mig-3g40gb-9-4": made[0].uuid,
            "gpu-0-mig-1g10gb-19-0": made[1].uuid,
        }
        assert {m.uuid for m in backend.inventory().mig_devices} == {m.uuid for m in made}
        client.claim = claim(result("gpu-0-mig-3g40gb-9-4"), uid="uid-1")
        out = daemon.plugin.prepare([ClaimRef("ns", "c", "uid-1")])["uid-1"]
        assert out.error == ""
        assert [d.uuid for d in out.devices] == [made[0].uuid]
        assert daemon.plugin.unprepare([ClaimRef("ns", "c", "uid-1")]) == {"uid-1": ""}
        assert {m.uuid for m in backend.inventory().mig_devices} == {m.uuid for m in made}
    finally:
        daemon.stop()
    assert (
        "gpudra_node_dynamic_mig_published 0.0" in generate_latest(daemon.metrics.registry).decode()
    )


@dataclass
class FlakyClient:
    """gpudra's API client as the publisher uses it, with one unexpected failure."""

    created: list[dict[str, Any]] = field(default_factory=list)
    minor: int = 37  # the server's Kubernetes minor
    claim: dict[str, Any] | None = None  # what a ResourceClaim get answers

    def list(self, res: Any, **kw: Any) -> ObjectList:
        return ObjectList([], "1")

    def get(self, res: Any, name: str, **kw: Any) -> dict[str, Any]:
        if res.plural == "resourceclaims" and self.claim is not None:
            return self.claim
        return {"metadata": {"uid": "node-uid"}}

    def create(self, res: Any, obj: dict[str, Any]) -> dict[str, Any]:
        self.created.append(obj)
        return obj

    def watch(self, res: Any, **kw: Any) -> Iterator[Any]:
        time.sleep(0.1)
        return iter(())

    def server_version(self) -> tuple[int, int]:
        return 1, self.minor


def test_the_slice_publisher_survives_an_unexpected_error(tmp_path: Path) -> None:
    calls = []

    def desired(owner: Any) -> list[dict[str, Any]]:
        calls.append(owner)
        if len(calls) == 1:
            raise RuntimeError("a bug in building the slices")
        inv = MockBackend(load_machine("pcie-l4"), node_name=NODE).inventory()
        return desired_slices(build_catalogue(inv), driver="gpu.gpudra.io", owner=owner)

    client = FlakyClient()
    pub = SlicePublisher(
        client,  # type: ignore[arg-type]
        node_name=NODE,
        driver="gpu.gpudra.io",
        desired=desired,
        max_backoff_s=0.1,
    )
    stop = threading.Event()
    t = threading.Thread(target=pub.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for("slices published after the error", lambda: client.created, timeout=10)
        assert t.is_alive()
    finally:
        stop.set()
        pub.trigger()
        t.join(5)


def test_a_daemon_starts_on_real_nvml_with_a_gpu_lost_and_publishes_the_others(
    tmp_path: Path,
) -> None:
    """A lost GPU used to fail the constructor's inventory read: a crash loop on restart."""
    lib = switched(8)
    lib.gpus[3].lost = True
    s = KubeletPluginSettings(
        node_name=NODE,
        plugin_dir=tmp_path / "plugin",
        registry_dir=tmp_path / "registry",
        cdi_dir=tmp_path / "cdi",
        boot_id_file=tmp_path / "boot_id",
    )
    client = FlakyClient()
    daemon = KubeletPluginDaemon(
        s,
        client=client,  # type: ignore[arg-type]
        backend=RealBackend(node_name=NODE, lib=lib),
    )
    names = [d["name"] for sl in daemon._desired(None) for d in sl["spec"].get("devices", [])]
    assert "gpu-3" not in names and {"gpu-0", "gpu-7"} <= set(names)
    daemon.stop()


def test_a_gpu_set_naming_a_missing_gpu_stops_the_daemon_before_it_takes_the_directory(
    tmp_path: Path,
) -> None:
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE)
    bad = settings(tmp_path, dynamic_mig_gpus="2,9")
    with pytest.raises(GpuSetError) as err:
        KubeletPluginDaemon(bad, client=FlakyClient(), backend=backend)  # type: ignore[arg-type]
    assert str(err.value) == (
        "invalid settings: dynamic_mig_gpus: GPU set '2,9' names GPU(s) [9]; this node has 0..7"
    )
    # nothing was taken: a daemon with good settings starts on the same directory
    KubeletPluginDaemon(settings(tmp_path), client=FlakyClient(), backend=backend).stop()  # type: ignore[arg-type]


@dataclass
class QuietWatchClient(FlakyClient):
    """An API server whose slice watch is a long poll with nothing to say (an idle node)."""

    released: threading.Event = field(default_factory=threading.Event)

    def server_version(self) -> tuple[int, int]:
        return 1, self.minor

    def list_pages(self, res: Any, **kw: Any) -> Iterator[tuple[list[Any], str]]:
        yield [], "1"

    def watch(self, res: Any, **kw: Any) -> Iterator[Any]:
        self.released.wait(60)  # the server's timeout, as far as stop() is concerned
        return iter(())


def test_stop_does_not_wait_for_the_slice_watchs_long_poll(tmp_path: Path) -> None:
    """The slice watch is a guarded thread that stop() cannot interrupt; waiting for it added
    up to 5 s to every daemon stop (and to every rollout and test that stops one)."""
    client = QuietWatchClient()
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE)
    daemon = KubeletPluginDaemon(settings(tmp_path), client=client, backend=backend)  # type: ignore[arg-type]
    daemon.start()
    try:
        wait_for("slices published", lambda: client.created, timeout=10)
    finally:
        began = time.monotonic()
        daemon.stop()
        took = time.monotonic() - began
        client.released.set()
    assert took < 3.0, f"stop took {took:.1f}s"
