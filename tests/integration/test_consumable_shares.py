"""Consumable capacity (KEP-5075) end to end on the real control plane: the node daemon
publishes an H100 for shares (``--shared-gpus``), and claims that each ask part of its memory
land on that one GPU, allocated by kube-scheduler or by the gpudra controller, until the
memory is used up; the next claim is refused and ``gpudra explain`` says why.  The shares are
then prepared (kubelet stand-in): one MPS control daemon for the GPU, each claim's containers
limited to its memory by ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``.  Before 1.36 (consumable
capacity off) the node daemon publishes plain devices and says so in its log and a metric.

An H100 80GB has 81559Mi: four shares of 20G (19074Mi each once rounded up to the 1Mi step)
fit, a fifth does not; four of 20Gi would not (81920Mi).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import pod
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import bound, node_slices
from gpudra_testkit.harness.processes import mps_daemons
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster.probes import free_port

pytestmark = pytest.mark.integration
SHARED = ["--gpus", "0", "--shared-gpus", "0"]
SHARE_MIB = 19074  # 20G rounded up to the memory policy's 1Mi step
H100_MIB = 81559


EXAMPLE = REPO / "deploy" / "examples" / "consumable-shares" / "memory-shares.yaml"


def share_claim(name: str, namespace: str) -> dict[str, Any]:
    """A claim made from the example's template: one 20G share of a shareable GPU."""
    template = next(
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ResourceClaimTemplate"
    )
    return {"metadata": {"name": name, "namespace": namespace}, "spec": template["spec"]["spec"]}


def results(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    c = kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)
    return list(
        (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results")
        or []
    )


def published(kube: KubeClient, node: str) -> list[dict[str, Any]]:
    return [d for s in node_slices(kube, node, DRIVER_NAME) for d in s["spec"].get("devices", [])]


def unschedulable(kube: KubeClient, namespace: str, name: str) -> str:
    p = kube.get(resources.PODS, name, namespace=namespace)
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable":
            return str(c.get("message", "unschedulable"))
    return ""


def explain(
    kubeconfig: Path, body: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    f = tmp_path / f"{body['metadata']['name']}.yaml"
    f.write_text(
        yaml.safe_dump({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", **body})
    )
    return subprocess.run(
        [sys.executable, "-m", "gpudra", "explain", "--kubeconfig", str(kubeconfig), "-f", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def needs_consumable_capacity(kube: KubeClient) -> None:
    minor = kube.server_version()[1]
    if minor < 36:
        pytest.skip(
            f"Kubernetes 1.{minor}: consumable capacity is off before 1.36 "
            "(test_before_1_36_plain_devices_are_published_and_said covers it)"
        )


def test_four_20G_shares_land_on_one_h100_with_the_scheduler_and_a_fifth_is_explained(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    cluster: Any,
    tmp_path: Path,
) -> None:
    needs_consumable_capacity(kube)
    d, h = node_daemon("dgx-h100", "shares", [*SHARED, "--gc-interval-s", "0.5"])
    (gpu,) = wait_for("the shared GPU published", lambda: published(kube, d.node_name))
    assert gpu["allowMultipleAllocations"] is True
    assert gpu["capacity"]["memory"]["requestPolicy"]["validRange"]["step"] == "1Mi"
    for i in range(5):
        kube.create(resources.RESOURCECLAIMS, share_claim(f"s{i}", namespace))
        kube.create(resources.PODS, pod(f"p{i}", namespace, f"s{i}", node=d.node_name))
        if i < 4:
            assert wait_for(f"p{i} bound", lambda i=i: bound(kube, namespace, f"p{i}"), 60)
    why = wait_for("p4 unschedulable", lambda: unschedulable(kube, namespace, "p4"), 60)
    got = [results(kube, namespace, f"s{i}") for i in range(4)]
    print(f"\nscheduler: {[(r[0]['device'], r[0]['consumedCapacity']) for r in got]}; p4: {why}")
    assert all(len(r) == 1 and r[0]["device"] == gpu["name"] for r in got)
    assert len({r[0]["shareID"] for r in got}) == 4  # four shares of one GPU
    assert all(r[0]["consumedCapacity"]["memory"] == f"{SHARE_MIB}Mi" for r in got)
    assert not results(kube, namespace, "s4")

    out = explain(cluster.kubeconfig, share_claim("s5", namespace), tmp_path)
    print(out.stdout)
    assert out.returncode == 1, out.stderr
    left = H100_MIB - 4 * SHARE_MIB
    assert (
        f"{gpu['name']} capacity memory: the share needs {SHARE_MIB}Mi, {left}Mi of "
        f"{H100_MIB}Mi left" in out.stdout
    )

    # prepared by the node daemon: one MPS daemon for the GPU, each claim limited to its share
    uids = {}
    for i in range(4):
        uid = kube.get(resources.RESOURCECLAIMS, f"s{i}", namespace=namespace)["metadata"]["uid"]
        resp = h.prepare_pod(kube.get(resources.PODS, f"p{i}", namespace=namespace), DRIVER_NAME)
        assert not resp[uid].error, resp[uid].error
        assert [dev.share_id for dev in resp[uid].devices] == [got[i][0]["shareID"]]
        uids[i] = uid
    uuid = gpu["attributes"]["uuid"]["string"]
    marker = f"mps/gpu-{uuid}/pipe"
    daemons = mps_daemons(marker)
    spec = json.loads((d.cdi_dir / spec_file_name(uids[0])).read_text())
    env = [e for dev in spec["devices"] for e in dev["containerEdits"].get("env", [])]
    env += spec.get("containerEdits", {}).get("env", [])
    print(f"MPS daemons {daemons}; CDI env {[e for e in env if 'MPS' in e]}")
    assert len(daemons) == 1
    assert f"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0={SHARE_MIB}M" in env
    for i in range(3):
        assert h.unprepare_pod(namespace, f"p{i}", DRIVER_NAME) == {uids[i]: ""}
    assert mps_daemons(marker) == daemons  # the last share still uses it
    assert h.unprepare_pod(namespace, "p3", DRIVER_NAME) == {uids[3]: ""}
    assert mps_daemons(marker) == []


def test_the_controller_packs_20G_shares_on_one_h100_and_explains_the_fifth(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    controller: Callable[..., Any],
) -> None:
    needs_consumable_capacity(kube)
    d, _ = node_daemon("dgx-h100", "ctrl-shares", [*SHARED, "--controller-managed-gpus", "0"])
    (gpu,) = wait_for("the shared GPU published", lambda: published(kube, d.node_name))
    assert gpu["allowMultipleAllocations"] is True and gpu.get("taints")
    controller()
    for i in range(5):
        kube.create(resources.RESOURCECLAIMS, share_claim(f"c{i}", namespace))
        kube.create(resources.PODS, pod(f"q{i}", namespace, f"c{i}", gated=True))
    for i in range(4):
        assert (
            wait_for(f"q{i} bound", lambda i=i: bound(kube, namespace, f"q{i}"), 60) == d.node_name
        )

    def warning() -> str:
        evs = [
            e
            for e in kube.list(resources.EVENTS, namespace=namespace).items
            if e["involvedObject"].get("name") == "q4" and e["type"] == "Warning"
        ]
        return str(evs[-1]["message"]) if evs else ""

    message = wait_for("q4 refused", warning, 60)
    got = [results(kube, namespace, f"c{i}") for i in range(4)]
    print(f"\ncontroller: {[r[0]['device'] for r in got]}; q4: {message}")
    assert all(len(r) == 1 and r[0]["device"] == gpu["name"] for r in got)
    assert len({r[0]["shareID"] for r in got}) == 4
    assert "capacity memory: the share needs 19074Mi" in message
    assert not bound(kube, namespace, "q4")


def test_before_1_36_plain_devices_are_published_and_said(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
) -> None:
    """Consumable capacity is off (1.34, 1.35): the GPU is published as a plain device, one
    claim per GPU, and the log and the ``gpudra_node_shared_gpus{state="fallback"}`` gauge
    say so."""
    minor = kube.server_version()[1]
    if minor >= 36:
        pytest.skip(f"Kubernetes 1.{minor} has consumable capacity (the tests above cover it)")
    port = free_port()
    d, _ = node_daemon("dgx-h100", "fallback", [*SHARED, "--metrics-port", str(port)])
    (gpu,) = wait_for("the GPU published", lambda: published(kube, d.node_name))
    assert "allowMultipleAllocations" not in gpu
    assert "requestPolicy" not in gpu["capacity"]["memory"]
    line = wait_for(
        "the fallback logged",
        lambda: next((x for x in d.logs(400).splitlines() if "shared" in x and "1.36" in x), ""),
    )
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    gauge = [x for x in metrics.decode().splitlines() if x.startswith("gpudra_node_shared_gpus{")]
    print(f"\n1.{minor}: {line}\n{gauge}")
    assert 'gpudra_node_shared_gpus{state="fallback"} 1.0' in gauge
    assert 'gpudra_node_shared_gpus{state="published"} 0.0' in gauge
