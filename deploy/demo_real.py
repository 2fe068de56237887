"""``make demo-real``: the examples as real containers on a real kubelet + containerd node.

Like ``make demo``, but the node is real (root; `make node-prereqs`): the local control plane
plus one node whose kubelet and containerd run pods for real, a ``gpudra kubelet-plugin`` host
process on the dgx-h100 mock profile registered with that kubelet, the DeviceClasses and every
deploy/examples pod.  Prints each pod's own output (``kubectl logs``: the GPUs and device nodes
CDI gave its container), then tears everything down and checks the host is as it was.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from gpudra.kube import resources
from gpudra_testkit.harness import examples
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster, locate
from gpudra_testkit.localcluster.realnode import check_host

REPO = Path(__file__).resolve().parents[1]

PROFILE = "dgx-h100"


def say(text: str = "") -> None:
    print(text, flush=True)


def main() -> int:
    problems = check_host()
    if problems:
        say("make demo-real needs: " + "; ".join(problems))
        return 2
    root = Path(tempfile.mkdtemp(prefix="gpudra-demo-real-", dir="/tmp"))
    binaries = locate()
    say(f"Starting Kubernetes {binaries.k8s_version} with one real node (kubelet + containerd)...")
    began = time.monotonic()
    cluster = LocalCluster(binaries=binaries, work_dir=root / "cluster", real_nodes=1)
    daemon: NodeDaemon | None = None
    try:
        cluster.start()
        kube = cluster.client()
        node = cluster.real_nodes[0]
        say(f"  ready in {time.monotonic() - began:.1f}s; node {node.name}, {node.layout.work_dir}")
        daemon = NodeDaemon.on_real_node(node, PROFILE, cluster.kubeconfig).start()
        say(f"  gpudra kubelet-plugin ({PROFILE} mock) registered with the real kubelet")
        for doc in examples.docs(REPO / "deploy" / "deviceclasses.yaml"):
            kube.apply(resources.DEVICECLASSES, doc, field_manager="gpudra-demo")
        kube.create(resources.NAMESPACES, {"metadata": {"name": "demo"}})
        pods = [examples.apply_example(kube, p, "demo", node.name) for p in examples.EXAMPLES]
        for pod in pods:
            examples.wait_running(kube, "demo", pod)
            log = examples.pod_log(kube, "demo", pod, lines=3)
            say()
            say(f"$ kubectl logs {pod}    # a real container on {node.name}")
            say(log.rstrip())
        say()
        say("Demo finished; tearing down (pods, node daemon, kubelet, containerd, host state).")
        kube.delete(resources.NAMESPACES, "demo")
        wait_for(
            "the demo pods gone", lambda: not kube.list(resources.PODS, namespace="demo").items, 90
        )
        return 0
    finally:
        if daemon is not None:
            daemon.stop()
        cluster.stop()  # raises if the host is not as it was
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
