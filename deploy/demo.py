"""``make demo``: gpudra end to end on a real local control plane with mock GPUs.

Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok; creates two
fake nodes (a DGX H100 and a DGX-1 V100), each with a ``gpudra kubelet-plugin`` process on
the matching mock profile; applies the DeviceClasses and the example claims of
deploy/examples/; waits for kube-scheduler to allocate them; lets the kubelet harness call
NodePrepareResources over the real gRPC socket; prints who got which GPUs and a CDI spec;
then (``demo_placement``) runs the gpudra controller beside kube-scheduler: the same 2-GPU
claims on two DGX-1V nodes with the NVLinks of each pair, a gang that waits and then places,
and ``gpudra explain`` on a claim that fits nowhere; then tears everything down.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import demo_placement
import yaml

from gpudra.catalogue.attributes import NVLINK_GROUP, UUID
from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.localcluster import LocalCluster, create_fake_node, locate

REPO = Path(__file__).resolve().parents[1]

NODES = {"demo-dgx-h100": "dgx-h100", "demo-dgx1-v100": "dgx1-v100"}
KINDS = {
    "DeviceClass": resources.DEVICECLASSES,
    "ResourceClaimTemplate": resources.RESOURCECLAIMTEMPLATES,
    "Pod": resources.PODS,
}


def say(text: str = "") -> None:
    print(text, flush=True)


def apply(kube: KubeClient, path: Path, namespace: str | None = None) -> list[str]:
    pods = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kube.apply(KINDS[doc["kind"]], doc, field_manager="gpudra-demo", namespace=namespace)
            if doc["kind"] == "Pod":
                pods.append(doc["metadata"]["name"])
    return pods


def wait_scheduled(kube: KubeClient, ns: str, names: list[str], timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        pods = [kube.get(resources.PODS, n, namespace=ns) for n in names]
        if all(p["spec"].get("nodeName") for p in pods):
            return pods
        if time.monotonic() > deadline:
            pending = [p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName")]
            raise TimeoutError(f"pods not scheduled after {timeout}s: {pending}")
        time.sleep(0.2)


def main() -> int:  # noqa: PLR0915 - a linear script reads best as one function
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="gpudra-demo-", dir="/tmp"))
    daemons: list[NodeDaemon] = []
    binaries = locate()
    say(
        f"Starting a local Kubernetes {binaries.k8s_version} control plane (etcd, apiserver, kcm, "
        "scheduler, kwok)..."
    )
    cluster = LocalCluster(binaries=binaries, work_dir=root / "cluster")
    started = time.monotonic()
    try:
        cluster.start()
        kube = cluster.client()
        say(f"  ready in {time.monotonic() - started:.1f}s at {kube.host}")
        harnesses = {}
        for node, profile in NODES.items():
            create_fake_node(kube, node)
            d = NodeDaemon(node, profile, cluster.kubeconfig, root / node).start()
            daemons.append(d)
            h = KubeletHarness(node_name=node, registry_dir=d.registry_dir, kube=kube)
            h.wait_for_plugin(DRIVER_NAME)
            harnesses[node] = h
            say(
                f"  node {node}: kwok node + gpudra kubelet-plugin on mock profile {profile}, "
                f"registered with the kubelet harness ({h.plugins[DRIVER_NAME].version})"
            )
        deadline = time.monotonic() + 30
        while len(kube.list(resources.RESOURCESLICES).items) < len(NODES):
            if time.monotonic() > deadline:
                raise TimeoutError("ResourceSlices were not published")
            time.sleep(0.2)
        apply(kube, REPO / "deploy" / "deviceclasses.yaml")
        kube.create(resources.NAMESPACES, {"metadata": {"name": "demo"}})
        names = []
        for example in sorted((REPO / "deploy" / "examples").glob("*.yaml")):
            names += apply(kube, example, "demo")
        say(f"Applied DeviceClasses and deploy/examples/: pods {', '.join(names)}")
        pods = wait_scheduled(kube, "demo", names)
        slices = kube.list(resources.RESOURCESLICES).items
        device_info = {
            (s["spec"]["pool"]["name"], d["name"]): d["attributes"]
            for s in slices
            for d in s["spec"]["devices"]
        }
        say()
        say(f"{'POD':<16}{'NODE':<17}{'DEVICE':<8}{'UUID':<42}{'NVLINK GROUP':<22}CDI DEVICE")
        first_spec = None
        for pod in pods:
            node = pod["spec"]["nodeName"]
            h = harnesses[node]
            resp = h.prepare_pod(pod, DRIVER_NAME)
            for uid, out in resp.items():
                if out.error:
                    say(f"{pod['metadata']['name']:<16}{node:<17}ERROR {out.error}")
                    continue
                for dev in out.devices:
                    attrs = device_info[(dev.pool_name, dev.device_name)]
                    group = attrs.get(NVLINK_GROUP, {}).get("string", "-")
                    say(
                        f"{pod['metadata']['name']:<16}{node:<17}{dev.device_name:<8}"
                        f"{attrs[UUID]['string']:<42}{group:<22}{dev.cdi_device_ids[0]}"
                    )
                first_spec = first_spec or (node, uid)
        if first_spec:
            node, uid = first_spec
            d = next(x for x in daemons if x.node_name == node)
            spec_file = next(d.cdi_dir.glob(f"*{uid}.json"))
            say()
            say(f"CDI spec written by the node daemon on {node} ({spec_file.name}):")
            say(json.dumps(json.loads(spec_file.read_text()), indent=2))
        demo_placement.run(cluster, kube, root, say)
        say()
        say(f"Demo finished in {time.monotonic() - started:.0f}s; tearing down.")
        return 0
    finally:
        for d in daemons:
            d.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
