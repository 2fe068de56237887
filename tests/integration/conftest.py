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

Component logs stay in pytest's temporary directory (printed on a failed start).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gpudra.kube import KubeClient, NotFound, resources
from gpudra.localcluster import (
    BinariesMissing,
    ClusterStartError,
    LocalCluster,
    create_fake_node,
    default_k8s_version,
    locate,
)
from gpudra.localcluster.binaries import locate_node
from gpudra.localcluster.realnode import RealNode, check_host

SKIP_ENV = "GPUDRA_SKIP_INTEGRATION"
REAL_NODE_SKIP_ENV = "GPUDRA_SKIP_REAL_NODE"
VERSION_ENV = "GPUDRA_K8S_VERSION"


@pytest.fixture(autouse=True)
def _integration_opt_out() -> None:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: integration tests skipped on request")


def k8s_version() -> str:
    return os.environ.get(VERSION_ENV) or default_k8s_version()


def unique(prefix: str) -> str:
    """A DNS-label-safe name that no other test (or earlier run) uses."""
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40]
    return f"{base}-{uuid.uuid4().hex[:6]}"


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
