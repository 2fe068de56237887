"""Fixtures for integration tests against a real local control plane.

* ``cluster`` (session): a running `LocalCluster` for ``$GPUDRA_K8S_VERSION`` (default: the
  ``DEFAULT_K8S_VERSION`` of deploy/controlplane/versions.env).  Missing binaries FAIL the tests
  with the command that builds them; set ``GPUDRA_SKIP_INTEGRATION=1`` to skip instead.
* ``kube`` (session): the admin `KubeClient` of that cluster.
* ``namespace`` (function): a fresh namespace, deleted after the test.
* ``wait_pods`` (session): ``wait_pods(namespace, done, timeout=60) -> pods`` polls the pods
  of a namespace (sorted by name) until ``done(pods)`` holds.
* ``real_node`` (module): a real kubelet + containerd node (`RealNode`) in that cluster.
* ``make_node`` (function): ``make_node(prefix="node", **fake_node_kwargs) -> name`` creates a
  kwok-managed Ready node with a unique name; all are deleted after the test.
* ``device_classes`` (session): deploy/deviceclasses.yaml applied (``gpu.gpudra.io``,
  ``mig.gpudra.io``).
* ``node_daemon`` (function): ``node_daemon(profile, prefix=None, extra_args=None) -> (daemon,
  kubelet)`` starts ``gpudra kubelet-plugin`` as the chart runs it, on a new kwok node with a
  mock profile, and a kubelet harness it has registered with; all are stopped afterwards.
* ``controller`` (function): ``controller(*extra_args) -> Popen`` starts ``gpudra controller``
  as the chart runs it (one replica, fast passes); all are stopped afterwards.
* ``cluster_objects`` (function): ``create(resource, obj)`` creates objects that are deleted
  after the test (for cluster-scoped objects and namespaces).

Objects and helpers shared by the test modules live in the test kit, not here and not in each
other: `gpudra_testkit.builders` (claims, pods, slices as dicts) and
`gpudra_testkit.harness.objects` (applying manifests, publishing slices, reading back).

Component logs stay in pytest's temporary directory (printed on a failed start).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudra.kube import KubeClient, NotFound, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import unique
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness.chart import Launch, launch, render
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import apply_file
from gpudra_testkit.localcluster import (
    BinariesMissing,
    ClusterStartError,
    LocalCluster,
    create_fake_node,
    default_k8s_version,
    locate,
)
from gpudra_testkit.localcluster.binaries import locate_node
from gpudra_testkit.localcluster.realnode import RealNode, check_host

SKIP_ENV = "GPUDRA_SKIP_INTEGRATION"
REAL_NODE_SKIP_ENV = "GPUDRA_SKIP_REAL_NODE"
VERSION_ENV = "GPUDRA_K8S_VERSION"


@pytest.fixture(autouse=True)
def _integration_opt_out() -> None:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: integration tests skipped on request")


def k8s_version() -> str:
    return os.environ.get(VERSION_ENV) or default_k8s_version()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1")
    problem = ""
    try:
        local = LocalCluster(binaries=locate(k8s_version()), work_dir=tmp_path_factory.mktemp("cp"))
        local.start()
    except BinariesMissing as e:
        problem = f"{e}\n(set {SKIP_ENV}=1 to skip the integration tests)"
    except ClusterStartError as e:
        problem = f"the local control plane did not start:\n{e}"
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> KubeClient:
    return cluster.client()


@pytest.fixture(scope="module")
def real_node(cluster: LocalCluster, kube: KubeClient) -> Iterator[RealNode]:
    """A real kubelet + containerd node of the session cluster (one module at a time: one
    real node per host).  A host that cannot run one FAILS the tests, naming what is missing;
    ``GPUDRA_SKIP_REAL_NODE=1`` leaves the tier out on purpose.  Teardown asserts that the
    host is as it was before the node started."""
    if os.environ.get(REAL_NODE_SKIP_ENV) == "1":
        pytest.skip(f"{REAL_NODE_SKIP_ENV}=1: real-node tests skipped on request")
    problems = check_host()
    try:
        locate_node(k8s_version())
    except BinariesMissing as e:
        problems.append(str(e))
    if problems:
        pytest.fail(
            "the real-node tier cannot run here: "
            + "; ".join(problems)
            + f" (set {REAL_NODE_SKIP_ENV}=1 to leave it out)",
            pytrace=False,
        )
    node = cluster.add_real_node(unique("real"))
    try:
        yield node
    finally:
        cluster.real_nodes.remove(node)
        left = node.stop(kube)
        assert not left, f"the real node left the host changed: {left}"


@pytest.fixture
def namespace(kube: KubeClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique(f"t-{request.node.name}")
    kube.create(resources.NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFound):
        kube.delete(resources.NAMESPACES, name)


@pytest.fixture
def make_node(kube: KubeClient) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(prefix: str = "node", **kw: Any) -> str:
        name = unique(prefix)
        created.append(name)
        create_fake_node(kube, name, **kw)
        return name

    yield make
    for name in created:
        with contextlib.suppress(NotFound):
            kube.delete(resources.NODES, name)


@pytest.fixture(scope="session")
def wait_pods(kube: KubeClient) -> Callable[..., list[dict[str, Any]]]:
    def wait(
        namespace: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            pods = kube.list(resources.PODS, namespace=namespace).items
            pods.sort(key=lambda p: p["metadata"]["name"])
            if pods and done(pods):
                return pods
            if time.monotonic() > deadline:
                states = {p["metadata"]["name"]: p.get("status") for p in pods}
                raise AssertionError(f"pods in {namespace} never got there: {states}")
            time.sleep(0.2)

    return wait


@pytest.fixture(scope="session")
def device_classes(kube: KubeClient) -> None:
    apply_file(kube, REPO / "deploy" / "deviceclasses.yaml")


@pytest.fixture
def node_daemon(
    cluster: LocalCluster,
    kube: KubeClient,
    make_node: Callable[..., str],
    device_classes: None,
) -> Iterator[Callable[..., tuple[NodeDaemon, KubeletHarness]]]:
    started: list[tuple[NodeDaemon, KubeletHarness]] = []
    # unix socket paths must stay under 108 bytes: pytest's tmp_path is too deep
    root = Path(tempfile.mkdtemp(prefix="gpudra-", dir="/tmp"))

    def start(
        profile: str, prefix: str | None = None, extra_args: list[str] | None = None
    ) -> tuple[NodeDaemon, KubeletHarness]:
        node = make_node(prefix or profile)
        d = NodeDaemon(node, profile, cluster.kubeconfig, root / node, list(extra_args or []))
        d.start()
        h = KubeletHarness(node_name=node, registry_dir=d.registry_dir, kube=kube)
        h.wait_for_plugin(DRIVER_NAME)
        started.append((d, h))
        return d, h

    yield start
    for d, h in started:
        h.close()
        d.stop()
    shutil.rmtree(root, ignore_errors=True)


def controller_launch(files_dir: Path) -> Launch:
    """The controller as the chart deploys it (one replica, fast passes, no metrics port)."""
    values = {
        "kubeletPlugin": {"enabled": False},
        "controller": {"replicas": 1, "interval": 0.3, "metricsPort": 0},
    }
    return launch(render(values), "Deployment", node_name="", files_dir=files_dir)


@pytest.fixture
def controller(
    cluster: LocalCluster, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"controller-{len(procs)}.log").open("wb")
        how = controller_launch(tmp_path)
        p = subprocess.Popen(
            [*how.argv, "--kubeconfig", str(cluster.kubeconfig), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **how.env},
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


@pytest.fixture
def cluster_objects(kube: KubeClient) -> Iterator[Callable[[Any, dict[str, Any]], Any]]:
    """``create(resource, obj)``: creates an object and deletes it (cluster-scoped ones, and
    namespaces) after the test, last created first."""
    created: list[tuple[Any, str]] = []

    def create(res: Any, obj: dict[str, Any]) -> Any:
        out = kube.create(res, obj)
        created.append((res, obj["metadata"]["name"]))
        return out

    yield create
    for res, name in reversed(created):
        with contextlib.suppress(NotFound):
            kube.delete(res, name)
