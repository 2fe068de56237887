"""The node daemon with a real kubelet and containerd (`gpudra_testkit.localcluster.realnode`).

No stand-in: the kubelet registers the daemon through its plugin watcher, calls
NodePrepareResources itself, and containerd applies the CDI spec to a real container.  Each
deploy/examples manifest becomes a Running pod whose own output shows exactly the GPUs its
claim was allocated.  Then the kubelet's realities: its restart (slices wiped, plugins
re-registered), the daemon's restart and crash while pods run, a pod deleted while its prepare
is slow, the kubelet's 45 s prepare deadline, the daemon's API server hanging, a simulated
reboot, and a GPU fault reaching the pod's status through the kubelet's health stream.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient, NotFound, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import unique
from gpudra_testkit.harness import examples
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import gone, node_slices
from gpudra_testkit.harness.tcpproxy import HangingProxy
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster
from gpudra_testkit.localcluster.realnode import RealNode

pytestmark = pytest.mark.integration
PROFILE = "dgx-h100"


@pytest.fixture(scope="module")
def daemon(
    real_node: RealNode,
    cluster: LocalCluster,
    kube: KubeClient,
    device_classes: None,
) -> Iterator[NodeDaemon]:
    """``gpudra kubelet-plugin`` as a host process in the real kubelet's plugin dirs."""
    d = NodeDaemon.on_real_node(real_node, PROFILE, cluster.kubeconfig)
    d.extra_args += ["--health-recovery-s", "2", "--health-heartbeat-s", "2"]
    d.start()
    wait_for("the node's slices", lambda: node_slices(kube, real_node.name), 30)
    wait_for("the kubelet registered the plugin", lambda: registrations(real_node) >= 1, 30)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def ns(kube: KubeClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique(f"rn-{request.node.name}")
    kube.create(resources.NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFound):
        kube.delete(resources.NAMESPACES, name)
    # the pods' claims are unprepared by the kubelet once the pods are gone
    wait_for(f"namespace {name} gone", lambda: gone(kube, resources.NAMESPACES, name), 90)


def registrations(node: RealNode) -> int:
    """How often the kubelet connected to the plugin (its log is kept across restarts)."""
    log = (node.layout.work_dir / "logs" / "kubelet.log").read_text()
    return sum(
        1
        for line in log.splitlines()
        if '"Connection changed"' in line
        and f'driverName="{DRIVER_NAME}"' in line
        and "connected=true" in line
    )


def cdi_spec(node: RealNode, claim_uid: str) -> Path:
    return node.layout.cdi_dir / spec_file_name(claim_uid)


def claim_uid(kube: KubeClient, namespace: str, pod: str) -> str:
    p = kube.get(resources.PODS, pod, namespace=namespace)
    name = p["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
    return str(kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)["metadata"]["uid"])


def container_ids(kube: KubeClient, namespace: str, pod: str) -> list[tuple[str, int]]:
    p = kube.get(resources.PODS, pod, namespace=namespace)
    return [
        (s.get("containerID", ""), int(s.get("restartCount", 0)))
        for s in p["status"].get("containerStatuses") or []
    ]


@pytest.mark.parametrize("example", examples.EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_exactly_its_gpus(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str, example: Path
) -> None:
    pod, log = examples.run_example(kube, real_node.name, example, ns)
    print(f"{example.name} on {real_node.name} ({kube.server_version()}):\n{log}")
    uid = claim_uid(kube, ns, pod)
    assert cdi_spec(real_node, uid).exists()
    kube.delete(resources.PODS, pod, namespace=ns, grace_period_seconds=1)
    # the real kubelet unprepares: the daemon removes the claim's CDI spec
    wait_for("the CDI spec removed", lambda: not cdi_spec(real_node, uid).exists(), 60)


def test_kubelet_restart_wipes_slices_and_the_daemon_recovers(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    single = examples.example("single-gpu")
    pod, _ = examples.run_example(kube, real_node.name, single, ns)
    before = container_ids(kube, ns, pod)
    slice_uids = {s["metadata"]["uid"] for s in node_slices(kube, real_node.name)}
    connected = registrations(real_node)
    real_node.restart_kubelet(kube)

    def republished() -> bool:
        now = {s["metadata"]["uid"] for s in node_slices(kube, real_node.name)}
        return bool(now) and not (now & slice_uids)

    # the restarted kubelet deletes the node's slices; the daemon publishes them again at once
    # (its watch sees the deletion; without it only a 30 s resync would)
    began = time.monotonic()
    wait_for("slices wiped and republished", republished, 10)
    print(f"slices back {time.monotonic() - began:.1f}s after the kubelet was Ready again")
    wait_for("the plugin re-registered", lambda: registrations(real_node) > connected, 30)
    assert examples.phase(kube, ns, pod) == "Running"
    assert container_ids(kube, ns, pod) == before, "the running pod was disturbed"
    # a new pod is still prepared
    pair = examples.example("nvlink-pair")
    examples.run_example(kube, real_node.name, pair, ns)


def test_daemon_crash_while_pods_run(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    single = examples.example("single-gpu")
    pod, _ = examples.run_example(kube, real_node.name, single, ns)
    uid = claim_uid(kube, ns, pod)
    before = container_ids(kube, ns, pod)
    daemon.kill()
    # while the daemon is down the pod keeps running; its deletion waits for unprepare
    kube.delete(resources.PODS, pod, namespace=ns, grace_period_seconds=1)
    assert cdi_spec(real_node, uid).exists()
    daemon.start()
    # the kubelet retries NodeUnprepareResources until the daemon is back
    wait_for("the spec removed", lambda: not cdi_spec(real_node, uid).exists(), 90)
    wait_for("the pod gone", lambda: examples.phase(kube, ns, pod) == "Gone", 60)
    assert before
    pair = examples.example("nvlink-pair")
    examples.run_example(kube, real_node.name, pair, ns)


def mock_of(daemon: NodeDaemon) -> MockBackend:
    """The daemon's mock node, through the state file it shares with the daemon."""
    return MockBackend(
        load_machine(PROFILE), node_name=daemon.node_name, state_file=daemon.state_file
    )


def test_pod_deleted_while_its_prepare_is_slow(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    mock = mock_of(daemon)
    mock.hang(12.0)
    try:
        single = examples.example("single-gpu")
        pod = examples.apply_example(kube, single, ns, real_node.name)
        wait_for(
            "pod bound",
            lambda: kube.get(resources.PODS, pod, namespace=ns)["spec"].get("nodeName"),
            60,
        )
        uid = wait_for("claim", lambda: _claim_uid_or_none(kube, ns, pod), 30)
        wait_for("the kubelet called prepare", lambda: f"preparing {ns}/" in daemon_log(daemon), 30)
        kube.delete(resources.PODS, pod, namespace=ns, grace_period_seconds=1)
    finally:
        mock.hang(0.0)
    # the slow prepare finishes, then the kubelet unprepares: nothing is left held
    wait_for("the pod gone", lambda: examples.phase(kube, ns, pod) == "Gone", 90)
    wait_for("the claim unprepared", lambda: uid not in daemon.checkpoint_text(), 60)
    assert not cdi_spec(real_node, uid).exists()
    log = daemon_log(daemon)
    assert log.index(f"prepared {ns}/") < log.index(f"unprepared {ns}/"), log
    # the GPU is free again: a claim for all eight still fits
    examples.run_example(kube, real_node.name, examples.example("nvlink-pair"), ns)


def test_prepare_past_the_kubelets_deadline_is_retried(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    """The kubelet gives NodePrepareResources 45 s; a prepare that takes longer is cancelled
    on the kubelet's side and retried; the daemon's late result must serve the retry."""
    mock = mock_of(daemon)
    mock.hang(50.0)
    try:
        single = examples.example("single-gpu")
        pod = examples.apply_example(kube, single, ns, real_node.name)
        wait_for("the kubelet called prepare", lambda: f"preparing {ns}/" in daemon_log(daemon), 60)
    finally:
        mock.hang(0.0)
    kubelet_log = real_node.layout.work_dir / "logs" / "kubelet.log"
    wait_for("the kubelet's deadline", lambda: "DeadlineExceeded" in kubelet_log.read_text(), 60)
    examples.wait_running(kube, ns, pod, timeout=120)
    log = examples.pod_log(kube, ns, pod, lines=3)
    assert examples.printed_uuids(log) == examples.allocated_uuids(kube, ns, pod)


def test_a_hung_api_server_fails_prepare_before_the_kubelets_deadline(
    kube: KubeClient,
    real_node: RealNode,
    daemon: NodeDaemon,
    cluster: LocalCluster,
    ns: str,
    tmp_path: Path,
) -> None:
    """Only the daemon's API server connection hangs (a proxy that stops answering).  The
    daemon must answer the kubelet's NodePrepareResources with an error well inside its 45 s
    (no DeadlineExceeded), the kubelet retries, and the pod runs once the API answers."""
    server = urlsplit(
        yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    )
    proxy = HangingProxy((server.hostname or "127.0.0.1", server.port or 443))
    kubelet_log = real_node.layout.work_dir / "logs" / "kubelet.log"
    daemon.stop()
    hung = NodeDaemon.on_real_node(
        real_node, PROFILE, proxy.kubeconfig(cluster.kubeconfig, tmp_path / "kubeconfig")
    )
    try:
        seen = registrations(real_node)
        hung.start()
        wait_for("registered again", lambda: registrations(real_node) > seen, 60)
        deadlines = kubelet_log.read_text().count("DeadlineExceeded")
        with proxy.hanging():
            pod = examples.apply_example(kube, examples.example("single-gpu"), ns, real_node.name)
            wait_for("the kubelet called prepare", lambda: f"preparing {ns}/" in hung.logs(400), 60)
            t0 = time.monotonic()
            wait_for("the prepare failed", lambda: "API error" in hung.logs(400), 40)
            failed_after = time.monotonic() - t0
            wait_for(
                "the kubelet saw the daemon's error",
                lambda: "reading claim" in kubelet_log.read_text(),
                60,
            )
            assert proxy.hung_connections >= 1
        examples.wait_running(kube, ns, pod, timeout=180)
        assert failed_after < 20, f"the prepare took {failed_after:.0f}s to fail"
        assert kubelet_log.read_text().count("DeadlineExceeded") == deadlines
        log = examples.pod_log(kube, ns, pod, lines=3)
        assert examples.printed_uuids(log) == examples.allocated_uuids(kube, ns, pod)
    finally:
        hung.stop()
        proxy.close()
        daemon.start()


def test_reboot_brings_pods_back_with_their_devices(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    pair = examples.example("nvlink-pair")
    pod, log_before = examples.run_example(kube, real_node.name, pair, ns)
    before = container_ids(kube, ns, pod)
    daemon.stop()
    real_node.power_off()
    assert not list(real_node.layout.cdi_dir.iterdir())  # tmpfs: gone with the power
    daemon.boot_id_file.write_text(str(uuid.uuid4()) + "\n")  # a new boot
    daemon.start()
    real_node.power_on(kube)

    def restarted() -> bool:
        now = container_ids(kube, ns, pod)
        return bool(now) and now != before and examples.phase(kube, ns, pod) == "Running"

    wait_for("the pod's containers started again", restarted, 120)
    examples.wait_running(kube, ns, pod)
    log = examples.pod_log(kube, ns, pod, lines=3)
    assert examples.printed_uuids(log) == examples.printed_uuids(log_before)
    expected = examples.e2e().expected_devices(examples.docs(pair))
    assert not examples.e2e().check_env(log, expected), log


def _claim_uid_or_none(kube: KubeClient, namespace: str, pod: str) -> str | None:
    try:
        return claim_uid(kube, namespace, pod)
    except (KeyError, IndexError):
        return None


def daemon_log(daemon: NodeDaemon) -> str:
    return daemon.log_file.read_text()


def resource_health(kube: KubeClient, namespace: str, pod: str) -> dict[str, str]:
    """resourceID -> health, from the pod's allocatedResourcesStatus (what the kubelet wrote)."""
    p = kube.get(resources.PODS, pod, namespace=namespace)
    out = {}
    for cs in (p.get("status") or {}).get("containerStatuses") or []:
        for entry in cs.get("allocatedResourcesStatus") or []:
            for r in entry.get("resources") or []:
                out[str(r["resourceID"])] = str(r.get("health", ""))
    return out


def test_a_gpu_fault_reaches_the_pods_status(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    """KEP-4680 with the real kubelet: it opens the daemon's health stream and writes the
    allocated device's health into the pod's status (ResourceHealthStatus, on from 1.36)."""
    pod, _ = examples.run_example(kube, real_node.name, examples.example("single-gpu"), ns)
    p = kube.get(resources.PODS, pod, namespace=ns)
    claim = kube.get(
        resources.RESOURCECLAIMS,
        p["status"]["resourceClaimStatuses"][0]["resourceClaimName"],
        namespace=ns,
    )
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    # the kubelet names a DRA device in the pod's status by its CDI device ID
    rid = f"k8s.{DRIVER_NAME}/claim={claim['metadata']['uid']}-{result['device']}"
    mock = mock_of(daemon)
    gpu = next(g for g in mock.inventory().gpus if f"gpu-{g.minor}" == result["device"])
    minor = kube.server_version()[1]
    slices_taint = lambda: any(  # noqa: E731
        t.get("key") == "gpu.gpudra.io/xid"
        for s in node_slices(kube, real_node.name, DRIVER_NAME)
        for d in s["spec"].get("devices") or []
        if d["name"] == result["device"]
        for t in d.get("taints") or []
    )
    try:
        if minor >= 36:
            wait_for(
                "the device healthy in the pod status",
                lambda: resource_health(kube, ns, pod).get(rid) == "Healthy",
                60,
            )
        began = time.monotonic()
        mock.inject_xid(gpu.index, 79)
        wait_for("the XID taint", slices_taint, 5, interval=0.1)
        if minor >= 36:
            wait_for(
                "Unhealthy in the pod status",
                lambda: resource_health(kube, ns, pod).get(rid) == "Unhealthy",
                30,
                interval=0.2,
            )
            print(
                f"1.{minor}: XID 79 on {result['device']}: {rid} Unhealthy in the pod's "
                f"status after {time.monotonic() - began:.2f}s"
            )
        else:
            # the kubelet's ResourceHealthStatus gate is off before 1.36: nothing is written
            assert resource_health(kube, ns, pod) == {}
    finally:
        mock.recover(gpu.index)
    wait_for("the taint gone", lambda: not slices_taint(), 30, interval=0.2)
    if minor >= 36:
        wait_for(
            "Healthy again",
            lambda: resource_health(kube, ns, pod).get(rid) == "Healthy",
            30,
            interval=0.2,
        )
    print(f"pod status: {resource_health(kube, ns, pod)}")
