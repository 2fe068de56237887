"""The local control plane itself: versions, served APIs, gates, loopback-only listeners, kwok
nodes and pods, the KubeClient against a real server, and teardown leaving no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpudra.kube import (
    AlreadyExists,
    Conflict,
    Invalid,
    KubeClient,
    NotFound,
    PatchType,
    Resource,
    resources,
)
from gpudra_testkit.localcluster import ClusterStartError, LocalCluster
from gpudra_testkit.localcluster.process import is_running

pytestmark = pytest.mark.integration

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)


def test_server_is_the_requested_version(cluster: LocalCluster, kube: KubeClient) -> None:
    assert kube.server_version() == (1, cluster.version.minor)
    info = kube.transport.request_json("GET", "/version")
    assert info["gitVersion"] == f"v{cluster.version}"


def test_resource_api_v1_is_served(kube: KubeClient) -> None:
    names = set(kube.discover_group("resource.k8s.io/v1"))
    assert {"resourceslices", "resourceclaims", "deviceclasses", "resourceclaimtemplates"} <= names
    assert "resourceclaims/status" in names


def test_one_gate_string_for_every_component(cluster: LocalCluster) -> None:
    flags = {}
    for c in cluster.components:
        if c.name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            flags[c.name] = [a for a in c.argv if a.startswith("--feature-gates=")]
    assert len(flags) == 3
    assert len({tuple(v) for v in flags.values()}) == 1, flags
    expected = cluster.settings.gates_flag
    assert flags["kube-apiserver"] == ([f"--feature-gates={expected}"] if expected else [])


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(fields[1].split(":")[0])
    return found


def test_everything_listens_on_loopback_only(cluster: LocalCluster) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}
    for c in cluster.components:
        addresses = _listening_addresses(c.pid)
        assert addresses, f"{c.name} listens on nothing"
        assert addresses <= loopback, f"{c.name} listens on {addresses}"


def test_fake_node_runs_a_pod(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    wait_pods: Callable[..., list[dict[str, Any]]],
) -> None:
    node = make_node("plain", cpu="4", memory="8Gi")
    assert kube.get(resources.NODES, node)["status"]["allocatable"]["cpu"] == "4"
    lease = kube.get(resources.LEASES, node, namespace="kube-node-lease")
    assert lease["spec"]["renewTime"]  # kwok heartbeats the node through its lease
    pod = {
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "c", "image": "example.invalid/none"}],
        },
    }
    kube.create(resources.PODS, pod)
    [running] = wait_pods(namespace, lambda ps: ps[0]["status"].get("phase") == "Running")
    assert running["spec"]["nodeName"] == node
    # The status subresource: a strategic merge adds a condition next to kwok's ones.
    condition = {"type": "gpudra.io/Checked", "status": "True"}
    patched = kube.patch_status(
        resources.PODS,
        "p",
        {"status": {"conditions": [condition]}},
        namespace=namespace,
        patch_type=PatchType.STRATEGIC,
    )
    types = {c["type"] for c in patched["status"]["conditions"]}
    assert {"Ready", "gpudra.io/Checked"} <= types


def test_kube_client_crud_patch_and_errors(kube: KubeClient, namespace: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
    created = kube.create(CONFIGMAPS, cm, namespace=namespace)
    with pytest.raises(AlreadyExists):
        kube.create(CONFIGMAPS, cm, namespace=namespace)
    merged = kube.patch(CONFIGMAPS, "cm", {"data": {"b": "2"}}, namespace=namespace)
    assert merged["data"] == {"a": "1", "b": "2"}
    ops = [{"op": "remove", "path": "/data/a"}]
    jsoned = kube.patch(CONFIGMAPS, "cm", ops, namespace=namespace, patch_type=PatchType.JSON)
    assert jsoned["data"] == {"b": "2"}
    applied = kube.apply(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": namespace},
            "data": {"c": "3"},
        },
        field_manager="gpudra-test",
    )
    assert applied["data"]["c"] == "3"
    managers = {m["manager"] for m in applied["metadata"]["managedFields"]}
    assert "gpudra-test" in managers
    stale = dict(created, data={"x": "y"})
    with pytest.raises(Conflict):
        kube.replace(CONFIGMAPS, stale)
    with pytest.raises(Conflict):
        kube.delete(CONFIGMAPS, "cm", namespace=namespace, uid="00000000-0000-0000-0000-0")
    listed = kube.list(CONFIGMAPS, namespace=namespace, field_selector="metadata.name=cm")
    assert [o["metadata"]["name"] for o in listed.items] == ["cm"]
    assert listed.resource_version
    kube.delete(CONFIGMAPS, "cm", namespace=namespace, uid=created["metadata"]["uid"])
    with pytest.raises(NotFound):
        kube.get(CONFIGMAPS, "cm", namespace=namespace)
    with pytest.raises(Invalid, match=r"metadata\.name"):
        kube.create(CONFIGMAPS, {"metadata": {"name": "Not_Valid"}}, namespace=namespace)


def test_kube_client_watch(kube: KubeClient, namespace: str) -> None:
    # Only "w": kcm publishes kube-root-ca.crt into every new namespace meanwhile.
    only_w = "metadata.name=w"
    start = kube.list(CONFIGMAPS, namespace=namespace, field_selector=only_w).resource_version
    kube.create(CONFIGMAPS, {"metadata": {"name": "w"}}, namespace=namespace)
    kube.patch(CONFIGMAPS, "w", {"data": {"k": "v"}}, namespace=namespace)
    kube.delete(CONFIGMAPS, "w", namespace=namespace)
    seen = []
    for event in kube.watch(
        CONFIGMAPS,
        namespace=namespace,
        resource_version=start,
        field_selector=only_w,
        timeout_seconds=5,
    ):
        seen.append((event.type, event.object["metadata"]["name"]))
        if event.type == "DELETED":
            break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from gpudra_testkit.localcluster import ClusterStartError, LocalCluster
    out, work, version, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    with LocalCluster(version=version, work_dir=work) as c:
        out.write_text(json.dumps(c.pids()))
        if mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("test failure inside the cluster")
    """
)


@pytest.mark.parametrize("mode", ["raise", "sigkill"])
def test_no_process_survives_the_owner(cluster: LocalCluster, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "pids.json"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(tmp_path / "work"), str(cluster.version), mode],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.exists(), result.stderr
    pids = json.loads(out.read_text())
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    if mode == "raise":
        assert result.returncode == 1
        assert "test failure inside the cluster" in result.stderr
    else:
        assert result.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while any(is_running(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [n for n, p in pids.items() if is_running(p)] == []


def test_up_and_down_cli(cluster: LocalCluster, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "gpudra_testkit.localcluster"]
    directory = tmp_path / "cli"
    up = subprocess.run(
        [*run, "up", "--dir", str(directory), "--version", str(cluster.version)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"export KUBECONFIG={directory.resolve() / 'kubeconfig'}"
    state = json.loads((directory / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    try:
        # The cluster outlived the `up` command and serves.
        with KubeClient.from_kubeconfig(directory / "kubeconfig") as client:
            assert client.get_text("/readyz").strip() == "ok"
    finally:
        down = subprocess.run(
            [*run, "down", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if is_running(p)] == []
    assert not (directory / "state.json").exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and is_running(int(proc.name)):
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_failed_start_names_the_component_and_cleans_up(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    broken = LocalCluster(
        binaries=cluster.binaries, work_dir=tmp_path, extra_gates={"NoSuchGate": True}
    )
    with pytest.raises(ClusterStartError) as info:
        broken.start()
    assert info.value.component == "kube-apiserver"
    assert "exited with status" in str(info.value)
    assert "NoSuchGate" in info.value.log_tail
    assert _processes_mentioning(str(tmp_path)) == []
