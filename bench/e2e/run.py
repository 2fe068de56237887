"""End to end, like for like: pods bound per second through the gpudra controller path
(gated pod -> controller allocates -> kube-scheduler binds) and through kube-scheduler alone.

One local control plane, one run per size.  The kwok nodes (DGX H100, 8 GPUs) are split in
two labelled pools of the same size: on one the node daemon's slices are controller-managed
(only the controller allocates there), on the other they are the scheduler's.  Each path gets
the same claim mix (1-8 GPUs, some with ``matchAttribute`` on the NVLink group) as the same
number of pods, created by the same 8 client threads; the scheduler path first, then the
controller path, with the controller already running and idle.  A pod's latency is from its
create call to the moment its ``nodeName`` is seen (a watch); a path's rate is bound pods /
(last bind - first create).  Writes ``bench/e2e/results.json``; ``bench/allocator/run.py``
puts the table into bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.allocator.run import GPU_CLASS
from gpudra.kube import KubeClient, resources
from gpudra.kube.informer import Informer
from gpudra_testkit.harness.objects import publish
from gpudra_testkit.localcluster import LocalCluster, fake_node, locate

REPO = Path(__file__).resolve().parents[2]

SIZES = [
    tuple(int(x) for x in s.split(":"))
    for s in os.environ.get("BENCH_E2E_SIZES", "50:200,500:2000").split(",")
]
SEED = int(os.environ.get("BENCH_SEED", "1"))
NS = "e2e"
GATE = "gpudra.io/topology"
# the allocator benchmark's GPU class, as an object the API server takes
CLASS = GPU_CLASS  # the shipped class: apiVersion, kind and all


def claims(rng: random.Random, n: int, prefix: str) -> list[dict[str, Any]]:
    """1 GPU (65%), 2 (25%, half of them NVLink-linked), 4 (7%), 8 (3%)."""
    out = []
    for i in range(n):
        roll = rng.random()
        count = 1 if roll < 0.65 else 2 if roll < 0.90 else 4 if roll < 0.97 else 8
        devices: dict[str, Any] = {
            "requests": [
                {"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io", "count": count}}
            ]
        }
        if count > 1 and rng.random() < 0.5:
            devices["constraints"] = [
                {"requests": ["g"], "matchAttribute": "gpu.gpudra.io/nvlinkGroup"}
            ]
        out.append(
            {"metadata": {"name": f"{prefix}-{i}", "namespace": NS}, "spec": {"devices": devices}}
        )
    return out


def setup_nodes(kube: KubeClient, n: int) -> None:
    def one(i: int) -> None:
        name = f"e2e-{i:04d}"
        pool = "ctrl" if i % 2 else "sched"
        created = kube.create(resources.NODES, fake_node(name, labels={"gpudra.io/e2e": pool}))
        managed = frozenset(range(8)) if pool == "ctrl" else frozenset()
        publish(kube, created, "dgx-h100", managed)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(n)))


def pod(name: str, pool: str, gated: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": {"gpudra.io/e2e": pool},
        "containers": [{"name": "c", "image": "busybox", "resources": {"claims": [{"name": "g"}]}}],
        "resourceClaims": [{"name": "g", "resourceClaimName": name}],
    }
    if gated:
        spec["schedulingGates"] = [{"name": GATE}]
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


class Binds:
    """When each pod was first seen bound (a watch on the namespace's pods)."""

    def __init__(self, kube: KubeClient) -> None:
        self.at: dict[str, float] = {}
        self.unschedulable: set[str] = set()

        def seen(p: dict[str, Any]) -> dict[str, Any]:
            name = p["metadata"]["name"]
            if p.get("spec", {}).get("nodeName"):
                self.at.setdefault(name, time.perf_counter())
            elif any(
                c.get("reason") == "Unschedulable"
                for c in p.get("status", {}).get("conditions", [])
            ):
                self.unschedulable.add(name)
            return {"metadata": p["metadata"]}

        self.informer = Informer(kube, resources.PODS, transform=seen)


def run_path(
    kube: KubeClient, binds: Binds, cs: list[dict[str, Any]], pool: str, gated: bool
) -> dict[str, Any]:
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda c: kube.create(resources.RESOURCECLAIMS, c), cs))
    names = [c["metadata"]["name"] for c in cs]
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.perf_counter()
        kube.create(resources.PODS, pod(name, pool, gated))

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(create, names))
    deadline = time.perf_counter() + 900
    last_change, seen = time.perf_counter(), -1
    while time.perf_counter() < deadline:
        done = sum(1 for n in names if n in binds.at)
        if done != seen:
            seen, last_change = done, time.perf_counter()
        if done == len(names) or time.perf_counter() - last_change > 30:
            break  # all bound, or nothing bound for 30 s (the rest do not fit)
        time.sleep(0.2)
    bound = [n for n in names if n in binds.at]
    last = max((binds.at[n] for n in bound), default=start)
    lat = sorted(binds.at[n] - created[n] for n in bound)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0] if lat else 0.0] * 99
    return {
        "pods": len(names),
        "bound": len(bound),
        "seconds": last - start,
        "pods_per_s": len(bound) / (last - start) if last > start else 0.0,
        "p50_s": q[49],
        "p99_s": q[98],
    }


def controller(cluster: LocalCluster, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gpudra"),
            "controller",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_size(nodes: int, pods: int, rng: random.Random) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="gpudra-e2e-", dir="/tmp"))
    binaries = locate()
    with LocalCluster(binaries=binaries, work_dir=root) as cluster:
        kube = cluster.client()
        kube.apply(resources.DEVICECLASSES, CLASS, field_manager="bench")
        kube.create(resources.NAMESPACES, {"metadata": {"name": NS}})
        t = time.perf_counter()
        setup_nodes(kube, nodes)
        setup_s = time.perf_counter() - t
        binds = Binds(kube)
        stop = threading.Event()
        threading.Thread(target=binds.informer.run, args=(stop,), daemon=True).start()
        binds.informer.synced.wait(60)
        ctl = controller(cluster, root / "controller.log")
        try:
            mix = claims(rng, pods // 2, "x")
            sched = run_path(kube, binds, [_renamed(c, "s") for c in mix], "sched", gated=False)
            print(f"  scheduler path: {sched}", flush=True)
            ours = run_path(kube, binds, [_renamed(c, "c") for c in mix], "ctrl", gated=True)
            print(f"  controller path: {ours}", flush=True)
            rss = rss_mib(ctl.pid)
        finally:
            stop.set()
            ctl.terminate()
            ctl.wait(15)
        version = binaries.k8s_version
    return {
        "nodes": nodes,
        "pods": pods,
        "setup_s": setup_s,
        "scheduler": sched,
        "controller": ours,
        "ratio": ours["pods_per_s"] / sched["pods_per_s"] if sched["pods_per_s"] else 0.0,
        "controller_rss_mib": rss,
        "k8s_version": version,
    }


def _renamed(c: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = json.loads(json.dumps(c))
    out["metadata"]["name"] = f"{prefix}{c['metadata']['name']}"
    return out


def main() -> int:
    rng = random.Random(SEED)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seed": SEED,
        "runs": [],
    }
    for nodes, pods in SIZES:
        print(f"e2e: {pods} pods on {nodes} nodes", flush=True)
        results["runs"].append(one_size(nodes, pods, random.Random(rng.random())))
    out = REPO / "bench" / "e2e" / "results.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
