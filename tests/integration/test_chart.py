"""The Helm chart against the real control plane.

* every object ``helm template`` renders (with the server's own capabilities, as ``helm
  install`` does) is accepted by server-side apply;
* with the chart's ServiceAccounts' tokens: the node daemon writes its own node's slices and
  is refused another node's (the chart's ValidatingAdmissionPolicy), the controller allocates
  claims and removes pod gates, neither reads Secrets; the controller may change a pod only
  by removing its gate and writing its condition (another ValidatingAdmissionPolicy);
* the node daemon and controller processes run with the chart's command, args and config and
  those tokens, and serve a gated pod end to end;
* the MutatingAdmissionPolicy gates opted-in pods where the server serves it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudra.controller.reconciler import Reconciler
from gpudra.kube import KubeClient, KubeError, NotFound, PatchType, resources
from gpudra.kube.resources import Resource
from gpudra.metrics.controller import ControllerMetrics
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import gpu_claim, resource_slice, unique
from gpudra_testkit.builders import pod as gpu_pod
from gpudra_testkit.harness.chart import find, launch, render
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.objects import publish
from gpudra_testkit.harness.satoken import pod_on_node, request_token, token_kubeconfig
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster

pytestmark = pytest.mark.integration
MOCK = {"mock": {"enabled": True, "profile": "dgx-h100"}}
OUR_GATE = "gpudra.io/topology"
PLACEMENT = "gpudra.io/Placement"
CLUSTER_KINDS = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
)


def discovery(kube: KubeClient) -> tuple[str, tuple[str, ...], dict[tuple[str, str], Resource]]:
    """The server's version, its API versions as helm's capabilities list them, and a
    Resource for each (apiVersion, kind) it serves."""
    version = kube.transport.request_json("GET", "/version")["gitVersion"].lstrip("v")
    gvs = ["v1"] + [
        v["groupVersion"]
        for g in kube.transport.request_json("GET", "/apis")["groups"]
        for v in g["versions"]
    ]
    caps: list[str] = []
    res: dict[tuple[str, str], Resource] = {}
    for gv in gvs:
        path = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        group, _, ver = gv.rpartition("/")
        caps.append(gv)
        for r in kube.transport.request_json("GET", path)["resources"]:
            if "/" in r["name"]:
                continue
            caps.append(f"{gv}/{r['kind']}")
            res[(gv, r["kind"])] = Resource(group, ver, r["name"], r["kind"], r["namespaced"])
    return version.split("-")[0].split("+")[0], tuple(caps), res


@pytest.fixture(scope="module")
def server(kube: KubeClient) -> tuple[str, tuple[str, ...], dict[tuple[str, str], Resource]]:
    return discovery(kube)


@pytest.fixture
def install(
    kube: KubeClient,
    server: tuple[str, tuple[str, ...], dict[tuple[str, str], Resource]],
) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """``install(values, namespace) -> objects``: render as ``helm install`` would against
    this server and server-side apply every object; cluster-scoped ones are deleted after."""
    version, caps, res = server
    applied: list[tuple[Resource, str]] = []

    def run(values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        objs = render(
            values,
            release=unique("g")[:12],
            namespace=namespace,
            kube_version=version,
            api_versions=caps,
        )
        for o in objs:
            r = res.get((o["apiVersion"], o["kind"]))
            assert r is not None, f"the server does not serve {o['apiVersion']} {o['kind']}"
            ns = namespace if r.namespaced else None
            out = kube.apply(r, o, field_manager="helm", namespace=ns)
            assert out["metadata"]["uid"] and out["kind"] == o["kind"]
            if o["kind"] in CLUSTER_KINDS:
                applied.append((r, o["metadata"]["name"]))
        return objs

    yield run
    for r, name in reversed(applied):
        with contextlib.suppress(NotFound):
            kube.delete(r, name)


def name_of(objs: list[dict[str, Any]], kind: str, component: str) -> str:
    return str(find(objs, kind, component)["metadata"]["name"])


def lease_of(objs: list[dict[str, Any]]) -> str:
    """The Lease the chart's controller elects its leader on (its --lease-name)."""
    args = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))


def slice_for(node: str, name: str, driver: str = DRIVER_NAME) -> dict[str, Any]:
    """A one-device slice of ``node``: what the admission policy is tested with."""
    return resource_slice(node, [{"name": "gpu-0"}], name=name, driver=driver)


def refused(action: Callable[[], Any]) -> str:
    try:
        action()
    except KubeError as e:
        return str(e)
    raise AssertionError("the API server allowed it")


def pod_policy_live(kube: KubeClient, ctl: KubeClient, namespace: str) -> str:
    """Wait until the controller's pod policy is active (admission policies take effect when
    the API server's informers see them): until ``ctl`` is refused a label change on a probe
    pod. Returns the refusal."""
    probe = unique("probe")
    manifest = {
        "metadata": {"name": probe, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    kube.create(resources.PODS, manifest, namespace=namespace)
    said: list[str] = []

    def refused_yet() -> bool:
        try:
            ctl.patch(
                resources.PODS,
                probe,
                {"metadata": {"labels": {"v": unique("v")}}},
                namespace=namespace,
            )
        except KubeError as e:
            said.append(str(e))
            return True
        return False

    wait_for("the controller's pod policy to be active", refused_yet, timeout=30)
    kube.delete(resources.PODS, probe, namespace=namespace)
    return said[-1]


@pytest.mark.parametrize("values", [{}, MOCK], ids=["defaults", "mock"])
def test_every_rendered_object_is_accepted_by_the_server(
    install: Callable[..., list[dict[str, Any]]],
    namespace: str,
    server: tuple[str, tuple[str, ...], dict[tuple[str, str], Resource]],
    values: dict[str, Any],
) -> None:
    objs = install(values, namespace)
    kinds = {o["kind"] for o in objs}
    assert {"DaemonSet", "Deployment", "DeviceClass", "ValidatingAdmissionPolicy"} <= kinds
    minor = int(server[0].split(".")[1])
    assert ("MutatingAdmissionPolicy" in kinds) is (minor >= 36)


def test_node_daemon_token_writes_only_its_own_nodes_slices(
    install: Callable[..., list[dict[str, Any]]],
    kube: KubeClient,
    cluster: LocalCluster,
    namespace: str,
    make_node: Callable[..., str],
    tmp_path: Path,
) -> None:
    objs = install(MOCK, namespace)
    sa = name_of(objs, "ServiceAccount", "kubelet-plugin")
    node_a, node_b = make_node("own"), make_node("other")
    pod = pod_on_node(kube, namespace, "daemon-a", sa, node_a)
    daemon = KubeClient.from_kubeconfig(
        token_kubeconfig(
            cluster.kubeconfig, request_token(kube, namespace, sa, pod), tmp_path / "a"
        )
    )
    mine = daemon.create(resources.RESOURCESLICES, slice_for(node_a, f"{node_a}-s"))
    mine["spec"]["devices"].append({"name": "gpu-1"})
    daemon.replace(resources.RESOURCESLICES, mine)

    # Admission policies take effect when the API server's informers see them (about a
    # second after the apply): probe until this daemon's write to another node is refused.
    said: list[str] = []

    def refused_yet() -> bool:
        try:
            daemon.create(resources.RESOURCESLICES, slice_for(node_b, f"{node_b}-x"))
        except KubeError as e:
            said.append(str(e))
            return True
        # allowed: not active yet (and it may become active before this delete)
        kube.delete(resources.RESOURCESLICES, f"{node_b}-x")
        return False

    wait_for("the own-node admission policy to be active", refused_yet, timeout=30)
    assert f"on node '{node_a}' may not write ResourceSlices of node '{node_b}'" in said[-1]
    msg = refused(
        lambda: daemon.create(
            resources.RESOURCESLICES, slice_for(node_a, f"{node_a}-o", driver="gpu.other.io")
        )
    )
    assert f"may only write ResourceSlices of driver {DRIVER_NAME}" in msg
    # its own node, but another node's pool: it would alias that node's devices
    alias = slice_for(node_a, f"{node_a}-p")
    alias["spec"]["pool"]["name"] = node_b
    msg = refused(lambda: daemon.create(resources.RESOURCESLICES, alias))
    assert (
        f"on node '{node_a}' may not write ResourceSlices of pool '{node_b}': its pool is "
        f"named after its node ('{node_a}')"
    ) in msg
    alias = kube.create(resources.RESOURCESLICES, alias)  # admin may
    alias["spec"]["devices"].append({"name": "gpu-1"})
    msg = refused(lambda: daemon.replace(resources.RESOURCESLICES, alias))
    assert f"may not write ResourceSlices of pool '{node_b}'" in msg
    daemon.delete(resources.RESOURCESLICES, f"{node_a}-p")  # but may clean such a slice up
    kube.create(resources.RESOURCESLICES, slice_for(node_b, f"{node_b}-s"))  # admin may
    try:
        msg = refused(lambda: daemon.delete(resources.RESOURCESLICES, f"{node_b}-s"))
        assert f"ResourceSlices of node '{node_b}'" in msg
    finally:
        kube.delete(resources.RESOURCESLICES, f"{node_b}-s")
    daemon.delete(resources.RESOURCESLICES, f"{node_a}-s")

    # a token of the same account that names no node (not from a pod on a node) writes nothing
    loose = KubeClient.from_kubeconfig(
        token_kubeconfig(cluster.kubeconfig, request_token(kube, namespace, sa), tmp_path / "l")
    )
    msg = refused(lambda: loose.create(resources.RESOURCESLICES, slice_for(node_a, f"{node_a}-l")))
    assert "token names no node" in msg

    secrets = Resource("", "v1", "secrets", "Secret", namespaced=True)
    assert "forbidden" in refused(lambda: daemon.list(secrets, namespace=namespace)).lower()
    assert "forbidden" in refused(lambda: daemon.list(secrets)).lower()
    assert "forbidden" in refused(lambda: daemon.list(resources.PODS)).lower()
    daemon.close()
    loose.close()


def test_controller_token_allocates_and_ungates_but_reads_no_secrets(
    install: Callable[..., list[dict[str, Any]]],
    kube: KubeClient,
    cluster: LocalCluster,
    namespace: str,
    make_node: Callable[..., str],
    tmp_path: Path,
) -> None:
    objs = install(MOCK, namespace)
    sa = name_of(objs, "ServiceAccount", "controller")
    node = make_node("ctl")
    publish(kube, kube.get(resources.NODES, node), "dgx-h100", managed=frozenset(range(8)))
    kube.create(resources.RESOURCECLAIMS, gpu_claim("two", namespace, 2), namespace=namespace)
    kube.create(resources.PODS, gpu_pod("p", namespace, "two", gated=True), namespace=namespace)
    ctl = KubeClient.from_kubeconfig(
        token_kubeconfig(cluster.kubeconfig, request_token(kube, namespace, sa), tmp_path / "c")
    )
    pod_policy_live(kube, ctl, namespace)  # its writes pass the chart's pod policy
    counts = Reconciler(ctl, metrics=ControllerMetrics()).run_pass()
    assert counts, "the controller did nothing"
    claim = kube.get(resources.RESOURCECLAIMS, "two", namespace=namespace)
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 2 and {r["pool"] for r in results} == {node}
    placed = kube.get(resources.PODS, "p", namespace=namespace)
    assert not placed["spec"].get("schedulingGates")
    assert [c["status"] for c in placed["status"]["conditions"] if c["type"] == PLACEMENT] == [
        "True"
    ], "the controller's condition was not written (it only logs a refusal)"

    lease_name = lease_of(objs)
    lease = {"metadata": {"name": lease_name}, "spec": {"holderIdentity": "x"}}
    ctl.create(resources.LEASES, dict(lease), namespace=namespace)
    ctl.replace(resources.LEASES, ctl.get(resources.LEASES, lease_name, namespace=namespace))
    other = {"metadata": {"name": "other"}, "spec": {}}
    assert (
        "forbidden"
        in refused(lambda: ctl.get(resources.LEASES, "other", namespace=namespace)).lower()
    )
    assert (
        "forbidden"
        in refused(lambda: ctl.create(resources.LEASES, other, namespace="default")).lower()
    )
    secrets = Resource("", "v1", "secrets", "Secret", namespaced=True)
    assert "forbidden" in refused(lambda: ctl.list(secrets)).lower()
    assert (
        "forbidden"
        in refused(
            lambda: ctl.create(resources.RESOURCESLICES, slice_for(node, f"{node}-c"))
        ).lower()
    )
    ctl.close()


def condition(kind: str, status: str = "True") -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": kind,
                    "status": status,
                    "reason": "Allocated",
                    "message": "claims allocated; gate removed",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }


def test_controller_token_changes_pods_only_by_removing_its_gate_and_writing_its_condition(
    install: Callable[..., list[dict[str, Any]]],
    kube: KubeClient,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The controller's ClusterRole may patch any pod; the chart's policy lets its token
    remove only gpudra.io/topology (whatever the patch looks like) and write only its own
    condition through pods/status, in every namespace."""
    objs = install(MOCK, namespace)
    sa = name_of(objs, "ServiceAccount", "controller")
    ctl = KubeClient.from_kubeconfig(
        token_kubeconfig(cluster.kubeconfig, request_token(kube, namespace, sa), tmp_path / "c")
    )
    gates = [{"name": "example.com/first"}, {"name": OUR_GATE}, {"name": "example.com/other"}]
    made: list[tuple[str, str]] = []

    def gated(name: str, ns: str = namespace) -> str:
        manifest = {
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "schedulingGates": gates},
        }
        made.append((ns, kube.create(resources.PODS, manifest, namespace=ns)["metadata"]["name"]))
        return name

    def json_patch(name: str, ops: list[dict[str, Any]], ns: str = namespace) -> Any:
        return ctl.patch(resources.PODS, name, ops, namespace=ns, patch_type=PatchType.JSON)

    def merge(name: str, patch: dict[str, Any], ns: str = namespace) -> Any:
        return ctl.patch(resources.PODS, name, patch, namespace=ns)

    def status(name: str, patch: dict[str, Any], ns: str = namespace) -> Any:
        return ctl.patch_status(
            resources.PODS, name, patch, namespace=ns, patch_type=PatchType.STRATEGIC
        )

    def gate_names(name: str, ns: str = namespace) -> list[str]:
        pod = kube.get(resources.PODS, name, namespace=ns)
        return [g["name"] for g in pod["spec"].get("schedulingGates") or []]

    try:
        assert "also changes metadata.labels" in pod_policy_live(kube, ctl, namespace)

        # allowed: our gate removed by index, guarded by a test op (other gates kept in order)
        by_index = gated(unique("index"))
        json_patch(
            by_index,
            [
                {"op": "test", "path": "/spec/schedulingGates/1/name", "value": OUR_GATE},
                {"op": "remove", "path": "/spec/schedulingGates/1"},
            ],
        )
        assert gate_names(by_index) == ["example.com/first", "example.com/other"]
        # allowed: the whole list replaced by itself without our gate (what the controller sends)
        by_list = gated(unique("list"))
        uid = kube.get(resources.PODS, by_list, namespace=namespace)["metadata"]["uid"]
        json_patch(
            by_list,
            [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "replace", "path": "/spec/schedulingGates", "value": [gates[0], gates[2]]},
            ],
        )
        assert gate_names(by_list) == ["example.com/first", "example.com/other"]
        # allowed: its condition added, then changed, through pods/status
        status(by_list, condition(PLACEMENT, "False"))
        status(by_list, condition(PLACEMENT, "True"))
        conds = kube.get(resources.PODS, by_list, namespace=namespace)["status"]["conditions"]
        assert [c["status"] for c in conds if c["type"] == PLACEMENT] == ["True"]

        # refused: everything else, each on a fresh gated pod, with what was wrong and what
        # is allowed
        probe = gated(unique("tol"))
        tolerations = kube.get(resources.PODS, probe, namespace=namespace)["spec"].get(
            "tolerations"
        )
        more = [*(tolerations or []), {"operator": "Exists"}]  # past every taint
        also = "may change a pod only by removing its scheduling gate gpudra.io/topology"
        order = "may only remove gpudra.io/topology from a pod's schedulingGates, keeping the "
        order += "other gates in order: [example.com/first, gpudra.io/topology, "
        order += "example.com/other] may become [example.com/first, example.com/other], not "
        conditions = "may only write pod conditions of type gpudra.io/Placement; this update "
        conditions += "also writes conditions of type "
        kube_system = "kube-system"
        cases: list[tuple[str, str, Callable[[str, str], Any], str]] = [
            (
                "a label",
                namespace,
                lambda n, ns: merge(n, {"metadata": {"labels": {"app": "y"}}}, ns),
                f"{also} (pods) and writing its gpudra.io/Placement condition (pods/status); "
                "this update of pods also changes metadata.labels",
            ),
            (
                "an annotation",
                namespace,
                lambda n, ns: merge(n, {"metadata": {"annotations": {"a": "b"}}}, ns),
                "this update of pods also changes metadata.annotations",
            ),
            (
                "a finalizer",
                namespace,
                lambda n, ns: merge(n, {"metadata": {"finalizers": ["example.com/hold"]}}, ns),
                "this update of pods also changes metadata.finalizers",
            ),
            (
                "the image",
                namespace,
                lambda n, ns: json_patch(
                    n, [{"op": "replace", "path": "/spec/containers/0/image", "value": "x"}], ns
                ),
                "this update of pods also changes spec.containers",
            ),
            (
                "a toleration",
                namespace,
                lambda n, ns: json_patch(
                    n, [{"op": "add", "path": "/spec/tolerations", "value": more}], ns
                ),
                "this update of pods also changes spec.tolerations",
            ),
            (
                "another gate removed",
                namespace,
                lambda n, ns: json_patch(
                    n, [{"op": "remove", "path": "/spec/schedulingGates/2"}], ns
                ),
                order + "[example.com/first, gpudra.io/topology]",
            ),
            (
                "the gates reordered",
                namespace,
                lambda n, ns: json_patch(
                    n,
                    [{"op": "replace", "path": "/spec/schedulingGates", "value": gates[::-1]}],
                    ns,
                ),
                order + "[example.com/other, gpudra.io/topology, example.com/first]",
            ),
            (
                "another condition type",
                namespace,
                lambda n, ns: status(n, condition("example.com/Ready"), ns),
                conditions + "example.com/Ready",
            ),
            (
                "a stock condition changed",
                namespace,
                lambda n, ns: status(
                    n, {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}, ns
                ),
                conditions + "PodScheduled",
            ),
            (
                "another status field",
                namespace,
                lambda n, ns: status(n, {"status": {"message": "hijacked"}}, ns),
                "this update of pods/status also changes status.message",
            ),
            (
                "a label through pods/status",
                namespace,
                lambda n, ns: status(n, {"metadata": {"labels": {"app": "y"}}}, ns),
                "this update of pods/status also changes metadata.labels",
            ),
            (
                "a label in kube-system",
                kube_system,
                lambda n, ns: merge(n, {"metadata": {"labels": {"app": "y"}}}, ns),
                "this update of pods also changes metadata.labels",
            ),
            (
                "another gate in kube-system",
                kube_system,
                lambda n, ns: json_patch(
                    n, [{"op": "remove", "path": "/spec/schedulingGates/0"}], ns
                ),
                order + "[gpudra.io/topology, example.com/other]",
            ),
        ]
        allowed = []
        for what, ns, action, says in cases:
            pod = gated(unique("case"), ns)
            try:
                action(pod, ns)
            except KubeError as e:
                assert "the gpudra controller may" in str(e), (what, str(e))
                assert str(e).endswith(says), (what, str(e))
            else:
                allowed.append(what)
        assert not allowed, f"the API server let the controller's token change {allowed}"
        # a gate added is refused by the API server's own validation (which runs before
        # validating admission): only removal is valid
        added = [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": "n"}}]
        assert "only deletion is allowed" in refused(lambda: json_patch(probe, added))
        # ...and ours may be removed from a kube-system pod: the rule is the change, not where
        system = gated(unique("sys"), kube_system)
        json_patch(system, [{"op": "remove", "path": "/spec/schedulingGates/1"}], kube_system)
        assert gate_names(system, kube_system) == ["example.com/first", "example.com/other"]
    finally:
        for ns, name in made:
            with contextlib.suppress(NotFound):
                kube.delete(resources.PODS, name, namespace=ns)
        ctl.close()


@pytest.fixture
def short_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="gpudra-c-", dir="/tmp"))  # unix sockets: < 108 bytes
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_chart_deployed_components_serve_a_gated_pod_with_their_own_tokens(
    install: Callable[..., list[dict[str, Any]]],
    kube: KubeClient,
    cluster: LocalCluster,
    namespace: str,
    make_node: Callable[..., str],
    short_root: Path,
) -> None:
    """The DaemonSet and Deployment the chart renders run as local processes (the rendered
    command, args, env and config; their pods' own tokens instead of in-cluster config)."""
    node = make_node("chart", labels={"gpudra.io/mock-profile": "dgx1-v100"})  # not the default
    values = {
        "mock": {"enabled": True, "profile": "dgx-h100"},
        "kubeletPlugin": {
            "kubeletDir": str(short_root / "kubelet"),
            "cdiDir": str(short_root / "cdi"),
            "metricsPort": 0,
            "controllerManagedGpus": "all",
        },
        "controller": {"interval": 0.3, "metricsPort": 0},
    }
    objs = install(values, namespace)
    (short_root / "kubelet" / "plugins_registry").mkdir(parents=True)  # the kubelet's

    def pod_of(component: str, on: str | None = None) -> dict[str, Any]:
        def look() -> dict[str, Any] | None:
            for p in kube.list(resources.PODS, namespace=namespace).items:
                labels = p["metadata"].get("labels") or {}
                if labels.get("app.kubernetes.io/component") == component and (
                    p["spec"].get("nodeName") and on in (None, p["spec"]["nodeName"])
                ):
                    return p
            return None

        found: dict[str, Any] = wait_for(f"a {component} pod", look, timeout=60)
        return found

    # tokens of the pods the DaemonSet and Deployment controllers created (kwok "runs" them)
    sa_daemon = name_of(objs, "ServiceAccount", "kubelet-plugin")
    sa_ctl = name_of(objs, "ServiceAccount", "controller")
    daemon_kc = token_kubeconfig(
        cluster.kubeconfig,
        request_token(kube, namespace, sa_daemon, pod_of("kubelet-plugin", node)),
        short_root / "daemon.kubeconfig",
    )
    ctl_kc = token_kubeconfig(
        cluster.kubeconfig,
        request_token(kube, namespace, sa_ctl, pod_of("controller")),
        short_root / "controller.kubeconfig",
    )
    procs: list[subprocess.Popen[bytes]] = []
    harness = KubeletHarness(
        node_name=node, registry_dir=short_root / "kubelet" / "plugins_registry", kube=kube
    )
    try:
        for kind, kc, who in (("DaemonSet", daemon_kc, node), ("Deployment", ctl_kc, "")):
            how = launch(objs, kind, node_name=who, files_dir=short_root / kind)
            log = (short_root / f"{kind}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [*how.argv, "--kubeconfig", str(kc)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **how.env},
                )
            )
        harness.wait_for_plugin(DRIVER_NAME, timeout=30)
        wait_for(
            "the daemon's slices",
            lambda: (
                kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={node}").items
            ),
        )
        kube.create(resources.RESOURCECLAIMS, gpu_claim("pair", namespace, 2), namespace=namespace)
        kube.create(
            resources.PODS, gpu_pod("job", namespace, "pair", gated=True), namespace=namespace
        )
        bound = wait_for(
            "the controller to place the pod and the scheduler to bind it",
            lambda: kube.get(resources.PODS, "job", namespace=namespace)["spec"].get("nodeName"),
            timeout=60,
        )
        assert bound == node
        resp = harness.prepare_pod(
            kube.get(resources.PODS, "job", namespace=namespace), DRIVER_NAME
        )
        (result,) = resp.values()
        assert not result.error and len(result.devices) == 2
        spec_files = list((short_root / "cdi").glob("*.json")) + list(
            (short_root / "cdi").glob("*.yaml")
        )
        assert spec_files, "no CDI spec written to the chart's cdiDir"
        leases = kube.list(resources.LEASES, namespace=namespace).items
        assert [x["metadata"]["name"] for x in leases] == [lease_of(objs)]
    except BaseException:
        for kind in ("DaemonSet", "Deployment"):
            print(f"--- {kind} log\n{(short_root / f'{kind}.log').read_text()[-4000:]}")
        raise
    finally:
        harness.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def test_scheduling_gate_policy_gates_opted_in_pods_where_served(
    install: Callable[..., list[dict[str, Any]]],
    kube: KubeClient,
    namespace: str,
    server: tuple[str, tuple[str, ...], dict[tuple[str, str], Resource]],
) -> None:
    objs = install(MOCK, namespace)
    if int(server[0].split(".")[1]) < 36:
        assert "MutatingAdmissionPolicy" not in {o["kind"] for o in objs}
        return  # nothing to gate with; the rendering test covers the absence

    def make(name: str, labels: dict[str, str], claims: bool, gated: bool = False) -> Any:
        manifest = gpu_pod(name, namespace, "any" if claims else "", gated=gated, labels=labels)
        return kube.create(resources.PODS, manifest, namespace=namespace)

    opted = {"gpudra.io/placement": "topology"}
    attempt = iter(range(1000))

    def gated_once_policy_is_live() -> bool:
        p = make(f"in-{next(attempt)}", opted, claims=True)
        gates = [g["name"] for g in p["spec"].get("schedulingGates") or []]
        return gates == ["gpudra.io/topology"]

    wait_for("the policy to gate an opted-in pod", gated_once_policy_is_live, timeout=30)
    assert not make("no-label", {}, claims=True)["spec"].get("schedulingGates")
    assert not make("no-claims", opted, claims=False)["spec"].get("schedulingGates")
    already = {"name": "gpudra.io/topology"}
    p = make("pre-gated", opted, claims=True, gated=True)
    assert p["spec"]["schedulingGates"] == [already]
