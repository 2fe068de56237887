"""How the controller's cost grows with the cluster: decision time and RSS at 50, 200, 500
and 1,000 nodes (``make bench``), plotted log-log so the slope is visible.

One local control plane; kwok nodes (DGX H100, 8 GPUs, controller-managed) are added to reach
each size in turn.  At each size a fresh ``gpudra controller`` process is started, is
waited on until it places a first gated pod (its caches are synced), and then:

- RSS once idle;
- ``ARRIVALS`` gated 1-GPU pods arriving at ``RATE``/s (no queueing): the controller's own
  time per decision (``gpudra_controller_decision_seconds``: deciding and writing one
  group, sum / count over the arrivals), and create -> allocation latency (p50, p99).

The cluster fills by ``ARRIVALS`` GPUs per size, far from full, so every size decides on
mostly free nodes.  Writes bench/e2e/growth.json and bench/growth.png; bench/allocator/run.py
puts the table into bench/RESULTS.md.  Knobs: BENCH_GROWTH_SIZES, BENCH_GROWTH_ARRIVALS.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.e2e.run import CLASS, NS, rss_mib
from gpudra.kube import KubeClient, resources
from gpudra_testkit.harness.objects import publish
from gpudra_testkit.localcluster import LocalCluster, fake_node, locate
from gpudra_testkit.localcluster.probes import free_port

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "e2e" / "growth.json"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_GROWTH_SIZES", "50,200,500,1000").split(","))
ARRIVALS = int(os.environ.get("BENCH_GROWTH_ARRIVALS", "20"))
RATE = 2.0
ALL = frozenset(range(8))
GATE = "gpudra.io/topology"


def say(text: str) -> None:
    print(f"[growth] {text}", flush=True)


def add_nodes(kube: KubeClient, have: int, want: int) -> None:
    def one(i: int) -> None:
        created = kube.create(resources.NODES, fake_node(f"g-{i:04d}"))
        publish(kube, created, "dgx-h100", ALL)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(have, want)))


def gated(kube: KubeClient, name: str) -> float:
    kube.create(
        resources.RESOURCECLAIMS,
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "devices": {
                    "requests": [{"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io"}}]
                }
            },
        },
    )
    created = time.perf_counter()
    kube.create(
        resources.PODS,
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "schedulingGates": [{"name": GATE}],
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"claims": [{"name": "g"}]}}
                ],
                "resourceClaims": [{"name": "g", "resourceClaimName": name}],
            },
        },
    )
    return created


def allocated_at(kube: KubeClient, name: str, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = kube.get(resources.RESOURCECLAIMS, name, namespace=NS)
        if (c.get("status") or {}).get("allocation"):
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"claim {name} not allocated in {timeout}s")


def decision_seconds(port: int) -> tuple[float, float]:
    """(sum, count) of gpudra_controller_decision_seconds."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        for key in (
            "gpudra_controller_decision_seconds_sum",
            "gpudra_controller_decision_seconds_count",
        ):
            if line.startswith(key + " "):
                values[key] = float(line.split()[1])
    return values["gpudra_controller_decision_seconds_sum"], values[
        "gpudra_controller_decision_seconds_count"
    ]


def measure(cluster: LocalCluster, kube: KubeClient, size: int, log: Path) -> dict[str, Any]:
    port = free_port()
    ctl = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gpudra"),
            "controller",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--metrics-port",
            str(port),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        t = time.perf_counter()
        first = f"warm-{size}"
        gated(kube, first)
        allocated_at(kube, first, timeout=300)
        synced_s = time.perf_counter() - t
        time.sleep(3)
        rss = rss_mib(ctl.pid)
        s0, n0 = decision_seconds(port)
        lat = []
        for i in range(ARRIVALS):
            name = f"a-{size}-{i}"
            created = gated(kube, name)
            lat.append(allocated_at(kube, name) - created)
            time.sleep(max(0.0, created + 1 / RATE - time.perf_counter()))
        s1, n1 = decision_seconds(port)
        q = statistics.quantiles(lat, n=100, method="inclusive")
        return {
            "nodes": size,
            "first_placement_s": synced_s,
            "rss_mib": rss,
            "rss_after_mib": rss_mib(ctl.pid),
            "decision_ms": (s1 - s0) / (n1 - n0) * 1e3 if n1 > n0 else 0.0,
            "decisions": n1 - n0,
            "allocated_p50_s": q[49],
            "allocated_p99_s": q[98],
        }
    finally:
        ctl.terminate()
        ctl.wait(15)


def plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [r["nodes"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(
        nodes, [r["decision_ms"] for r in runs], marker="o", label="decision (decide + write)"
    )
    left.plot(
        nodes,
        [r["allocated_p50_s"] * 1e3 for r in runs],
        marker="o",
        label="create -> allocated, p50",
    )
    right.plot(nodes, [r["rss_mib"] for r in runs], marker="o", label="controller RSS")
    for ax, unit in ((left, "ms"), (right, "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes (8 GPUs each)")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    left.set_title("controller decision time")
    right.set_title("controller memory")
    fig.suptitle(f"Controller growth ({platform.machine()}, {os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(REPO / "bench" / "growth.png", dpi=100)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="gpudra-growth-", dir="/tmp"))
    binaries = locate()
    runs = []
    with LocalCluster(binaries=binaries, work_dir=root) as cluster:
        kube = cluster.client()
        kube.apply(resources.DEVICECLASSES, CLASS, field_manager="bench")
        kube.create(resources.NAMESPACES, {"metadata": {"name": NS}})
        have = 0
        for size in SIZES:
            say(f"{size} nodes: adding {size - have}")
            add_nodes(kube, have, size)
            have = size
            runs.append(measure(cluster, kube, size, root / f"controller-{size}.log"))
            say(json.dumps(runs[-1]))
    doc = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "k8s_version": binaries.k8s_version,
        "arrivals": ARRIVALS,
        "rate": RATE,
        "runs": runs,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    plot(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
