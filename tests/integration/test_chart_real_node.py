"""``helm install charts/gpudra`` on the real node, from an image built here (no Docker).

The image is built by deploy/image/build.py (the Dockerfile's contents, daemonless) and
imported into the real node's containerd; the chart is installed in mock mode by the real helm
CLI.  The DaemonSet's node daemon and both controller replicas then run as real containers: the
daemon publishes with its own service-account token and serves the kubelet through the
host-path sockets, the controller (leader-elected) places a gated pod, and every
deploy/examples pod runs with exactly its GPUs.  ``helm uninstall`` leaves no slices, CDI
specs or sockets behind.  What `make kind-e2e` checks, on this machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import pytest

from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient, NotFound, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import gpu_claim, unique
from gpudra_testkit.builders import pod as gpu_pod
from gpudra_testkit.harness import examples
from gpudra_testkit.harness.chart import CHART, helm
from gpudra_testkit.harness.objects import gone, node_slices
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster
from gpudra_testkit.localcluster.binaries import cache_dir
from gpudra_testkit.localcluster.realnode import RealNode

pytestmark = pytest.mark.integration
RELEASE = "gpudra"
MANAGED = "6-7"  # GPUs only the controller allocates; kube-scheduler takes the others


def image_builder() -> ModuleType:
    path = examples.REPO / "deploy" / "image" / "build.py"
    spec = importlib.util.spec_from_file_location("image_build", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def image(real_node: RealNode) -> dict[str, Any]:
    out = cache_dir() / "images" / "gpudra-local.tar"
    summary: dict[str, Any] = image_builder().build(out, "gpudra:local")
    real_node.import_image(Path(summary["path"]))
    print(f"image {summary['name']}: {json.dumps(summary)}")
    return summary


def values(cluster: LocalCluster, node: RealNode) -> dict[str, Any]:
    api = urlparse(cluster.server)
    pin = {"kubernetes.io/hostname": node.name}
    return {
        "mock": {"enabled": True, "profile": "dgx-h100"},
        "image": {"repository": "gpudra", "tag": "local", "pullPolicy": "Never"},
        # no kube-proxy here: the pods reach the API server on the node's loopback
        "hostNetwork": True,
        "apiServer": {"host": api.hostname, "port": str(api.port)},
        "kubeletPlugin": {
            "kubeletDir": str(node.layout.kubelet_root),
            "cdiDir": str(node.layout.cdi_dir),
            "nodeSelector": pin,
            "controllerManagedGpus": MANAGED,
            "metricsPort": 0,
        },
        "controller": {"nodeSelector": pin, "replicas": 2, "metricsPort": 0},
    }


@pytest.fixture(scope="module")
def installed(
    cluster: LocalCluster, kube: KubeClient, real_node: RealNode, image: dict[str, Any]
) -> Iterator[str]:
    namespace = unique("gpudra-system")
    # the chart creates the DeviceClasses: the copies other tests applied make way, and come
    # back after the uninstall
    classes = examples.docs(examples.REPO / "deploy" / "deviceclasses.yaml")
    for c in classes:
        with contextlib.suppress(NotFound):
            kube.delete(resources.DEVICECLASSES, c["metadata"]["name"])
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(values(cluster, real_node), f)
        f.flush()
        helm(
            "upgrade", "--install", RELEASE, str(CHART), "--kubeconfig", str(cluster.kubeconfig),
            "--namespace", namespace, "--create-namespace", "--values", f.name,
            "--wait", "--timeout", "3m",
        )  # fmt: skip
    try:
        yield namespace
    finally:
        helm(
            "uninstall", RELEASE, "--kubeconfig", str(cluster.kubeconfig),
            "--namespace", namespace, "--wait", "--timeout", "2m", check=False,
        )  # fmt: skip
        with contextlib.suppress(NotFound):
            kube.delete(resources.NAMESPACES, namespace)
        for c in classes:
            kube.apply(resources.DEVICECLASSES, c, field_manager="gpudra-tests")


def pods_of(kube: KubeClient, namespace: str, component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/component={component}"
    return kube.list(resources.PODS, namespace=namespace, label_selector=selector).items


def running(pods: list[dict[str, Any]]) -> bool:
    return bool(pods) and all(p.get("status", {}).get("phase") == "Running" for p in pods)


def test_chart_on_the_real_node_serves_the_examples_and_the_controller(
    kube: KubeClient, real_node: RealNode, installed: str, image: dict[str, Any]
) -> None:
    daemons = pods_of(kube, installed, "kubelet-plugin")
    assert [p["spec"]["nodeName"] for p in daemons] == [real_node.name]
    controllers = wait_for(
        "controllers", lambda: running(pods_of(kube, installed, "controller")), 90
    )
    controllers = pods_of(kube, installed, "controller")
    assert len(controllers) == 2
    for p in [*daemons, *controllers]:  # real containers of the locally built image
        (status,) = p["status"]["containerStatuses"]
        assert status["image"] == image["name"] and status["containerID"].startswith(
            "containerd://"
        )
    assert wait_for("a controller leads", lambda: lease_holder(kube, installed), 60)
    # the daemon in its container publishes this node's slices with its own token ...
    wait_for("slices", lambda: node_slices(kube, real_node.name), 60)
    # ... and the kubelet found its registration socket through the host path
    reg = real_node.layout.registry_dir / f"{DRIVER_NAME}-reg.sock"
    assert reg.is_socket()

    ns = unique("chart-examples")
    kube.create(resources.NAMESPACES, {"metadata": {"name": ns}})
    try:
        for path in examples.EXAMPLES:
            _, log = examples.run_example(kube, real_node.name, path, ns)
            print(f"{path.name} (chart install):\n{log}")
        # a gated pod: the controller in its container allocates one of its GPUs and ungates
        kube.create(resources.RESOURCECLAIMS, gpu_claim("gated", ns, 1), namespace=ns)
        gated = gpu_pod("gated", ns, "gated", node=real_node.name, gated=True)
        container = gated["spec"]["containers"][0]
        container.update(image="busybox:1.37", imagePullPolicy="Never")
        container["command"] = ["sh", "-c", "env; trap 'exit 0' TERM; sleep 3600 & wait"]
        kube.create(resources.PODS, gated, namespace=ns)
        examples.wait_running(kube, ns, "gated", timeout=120)
        got = kube.get(resources.RESOURCECLAIMS, "gated", namespace=ns)["status"]["allocation"]
        (result,) = got["devices"]["results"]
        assert result["device"] in {"gpu-6", "gpu-7"}, result
        log = examples.pod_log(kube, ns, "gated", lines=3)
        assert examples.printed_uuids(log) == examples.allocated_uuids(kube, ns, "gated")
    finally:
        kube.delete(resources.NAMESPACES, ns)
        wait_for(f"namespace {ns} gone", lambda: gone(kube, resources.NAMESPACES, ns), 120)


def test_helm_uninstall_leaves_nothing_behind(
    cluster: LocalCluster, kube: KubeClient, real_node: RealNode, installed: str
) -> None:
    helm(
        "uninstall", RELEASE, "--kubeconfig", str(cluster.kubeconfig), "--namespace", installed,
        "--wait", "--timeout", "2m",
    )  # fmt: skip
    wait_for("the daemon pod gone", lambda: not pods_of(kube, installed, "kubelet-plugin"), 90)
    wait_for("the node's slices removed", lambda: not node_slices(kube, real_node.name), 90)
    specs = list(real_node.layout.cdi_dir.glob(spec_file_name("*")))
    assert specs == [], specs
    plugin_dir = real_node.layout.plugins_dir / DRIVER_NAME
    left = [*plugin_dir.glob("*.sock"), *real_node.layout.registry_dir.iterdir()]
    sockets = [p for p in left if p.is_socket()]
    assert sockets == [], sockets


def lease_holder(kube: KubeClient, namespace: str) -> str | None:
    try:
        lease = kube.get(resources.LEASES, f"{RELEASE}-controller", namespace=namespace)
    except NotFound:
        return None
    return lease["spec"].get("holderIdentity")
