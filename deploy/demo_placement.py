"""The second half of ``make demo``: what the gpudra controller does that kube-scheduler does
not, on the same control plane.

1. The same four 2-GPU claims on two empty DGX-1V nodes (cube mesh: some GPU pairs have two
   NVLinks, some one, some none): one node is kube-scheduler's, the other's GPUs are
   controller-managed; each pair is printed with its NVLinks.
2. A gang of three pods (label ``gpudra.io/gang``, size 3) on a DGX H100: two pods wait,
   the third arrives, all three are placed together.
3. ``gpudra explain`` on a claim that fits nowhere, against the live cluster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from gpudra.kube import KubeClient, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra_testkit.builders import gpu_claim, pod
from gpudra_testkit.harness.objects import bound, publish
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster, create_fake_node

NS = "placement"
HOPPER = "device.attributes['gpu.gpudra.io'].architecture == 'Hopper'"
ALL = frozenset(range(8))


def _gpus(kube: KubeClient, name: str) -> list[int]:
    c = kube.get(resources.RESOURCECLAIMS, name, namespace=NS)
    results = ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get(
        "results"
    ) or []
    return sorted(int(r["device"].split("-")[1]) for r in results)


def _events(kube: KubeClient, pod_name: str) -> list[str]:
    return [
        f"{e['reason']}: {e['message']}"
        for e in kube.list(resources.EVENTS, namespace=NS).items
        if e["involvedObject"].get("name") == pod_name
    ]


def pairs(kube: KubeClient, say: Callable[[str], None]) -> None:
    topo = MockBackend(load_machine("dgx1-v100"), node_name="x").inventory().topology
    sched, ctrl = "dgx1-scheduler", "dgx1-controller"
    for name, managed in ((sched, frozenset()), (ctrl, ALL)):
        create_fake_node(kube, name)
        publish(kube, kube.get(resources.NODES, name), "dgx1-v100", managed)
    for i in range(4):
        for path, node, gated in (("s", sched, False), ("c", ctrl, True)):
            kube.create(resources.RESOURCECLAIMS, gpu_claim(f"{path}{i}", NS, 2))
            kube.create(resources.PODS, pod(f"{path}{i}", NS, f"{path}{i}", node=node, gated=gated))
            wait_for(f"{path}{i} bound", lambda p=f"{path}{i}": bound(kube, NS, p))
    say("")
    say("The same four 2-GPU claims, one after another, on two empty DGX-1V nodes (cube mesh):")
    say(f"  {'claim':<7}{'kube-scheduler':<26}{'gpudra controller':<26}")
    total = {"s": 0, "c": 0}
    for i in range(4):
        cells = []
        for path in ("s", "c"):
            gpus = _gpus(kube, f"{path}{i}")
            links = topo.nvlink_count(gpus[0], gpus[1])
            total[path] += links
            cells.append(f"GPUs {gpus[0]},{gpus[1]}: {links} NVLink{'s' if links != 1 else ''}")
        say(f"  {i + 1:<7}{cells[0]:<26}{cells[1]:<26}")
    say(f"  {'total':<7}{str(total['s']) + ' NVLinks':<26}{str(total['c']) + ' NVLinks':<26}")
    say("  (kube-scheduler takes the first GPUs that fit; the controller scores every placement)")


def gang(kube: KubeClient, say: Callable[[str], None]) -> None:
    node = "h100-gang"
    create_fake_node(kube, node)
    publish(kube, kube.get(resources.NODES, node), "dgx-h100", ALL)
    labels = {"gpudra.io/gang": "train", "gpudra.io/gang-size": "3"}

    def member(i: int) -> None:
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"gang{i}", NS, 2))
        kube.create(resources.PODS, pod(f"gang{i}", NS, f"gang{i}", gated=True, labels=labels))

    say("")
    say("A gang of 3 pods x 2 GPUs (labels gpudra.io/gang=train, gpudra.io/gang-size=3):")
    member(0)
    member(1)
    waiting = wait_for(
        "the gang to wait",
        lambda: [e for e in _events(kube, "gang0") + _events(kube, "gang1") if "2 of 3" in e],
    )
    say(f"  2 pods created, nothing placed: {waiting[-1]}")
    member(2)
    for i in range(3):
        wait_for(f"gang{i} bound", lambda i=i: bound(kube, NS, f"gang{i}"))
    placed = ", ".join(f"gang{i} -> GPUs {_gpus(kube, f'gang{i}')}" for i in range(3))
    say(f"  3rd pod created: all placed together on {node}: {placed}")


def explain(cluster: LocalCluster, root: Path, say: Callable[[str], None]) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "eight-hoppers", "namespace": NS},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpus",
                        "exactly": {
                            "deviceClassName": "gpu.gpudra.io",
                            "count": 8,
                            "selectors": [{"cel": {"expression": HOPPER}}],
                        },
                    }
                ]
            }
        },
    }
    f = root / "eight-hoppers.yaml"
    f.write_text(yaml.safe_dump(claim))
    say("")
    say("gpudra explain on a claim that fits nowhere now (8 Hopper GPUs on one node):")
    say(f"  $ gpudra explain --kubeconfig ... -f {f.name}")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpudra",
            "explain",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-f",
            str(f),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in (out.stdout or out.stderr).splitlines():
        say(f"  {line}")


def run(cluster: LocalCluster, kube: KubeClient, root: Path, say: Callable[[str], None]) -> None:
    kube.create(resources.NAMESPACES, {"metadata": {"name": NS}})
    log = (root / "controller.log").open("wb")
    ctl = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpudra",
            "controller",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--interval-s",
            "0.3",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        pairs(kube, say)
        gang(kube, say)
        explain(cluster, root, say)
    finally:
        ctl.terminate()
        ctl.wait(15)
        log.close()
