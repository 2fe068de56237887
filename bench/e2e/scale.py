"""The controller at cluster scale: 1,000 kwok nodes x 8 GPUs and 10,000 pods, most of them
ordinary (not gated), as in a real cluster.

Measures, on one local control plane:
* the controller's RSS once its caches hold everything;
* LIST and WATCH requests the API server serves for the controller's resources while
  nothing changes (apiserver_request_total, over ``IDLE_S``; the other components use
  informers too, so the delta is the controller's);
* for gated pods arriving at a steady rate (``RATE`` per second, 1-GPU claims): time from
  the pod's create call to its claim's allocation, and to the pod's bind (p50, p99).
Writes ``bench/e2e/scale.json``; ``bench/allocator/run.py`` puts it into bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.e2e.run import CLASS, NS, controller, rss_mib
from gpudra.kube import KubeClient, resources
from gpudra.kube.informer import Informer
from gpudra_testkit.harness.apimetrics import served
from gpudra_testkit.harness.objects import publish
from gpudra_testkit.localcluster import LocalCluster, fake_node, locate

REPO = Path(__file__).resolve().parents[2]

NODES = int(os.environ.get("BENCH_SCALE_NODES", "1000"))
PODS = int(os.environ.get("BENCH_SCALE_PODS", "10000"))
GATED = int(os.environ.get("BENCH_SCALE_GATED", "100"))
RATE = float(os.environ.get("BENCH_SCALE_RATE", "5"))
IDLE_S = float(os.environ.get("BENCH_SCALE_IDLE_S", "30"))
WATCHED = ("pods", "resourceclaims", "nodes", "resourceslices", "deviceclasses")


def requests_by_verb(kube: KubeClient) -> dict[str, int]:
    return served(kube, ["LIST", "WATCH"], WATCHED)


def setup(kube: KubeClient) -> list[str]:
    names = [f"s-{i:04d}" for i in range(NODES)]

    def one(name: str) -> None:
        created = kube.create(resources.NODES, fake_node(name))
        publish(kube, created, "dgx-h100", frozenset(range(8)))

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, names))
    return names


def plain_pods(kube: KubeClient, nodes: list[str]) -> None:
    """Ordinary pods, already bound (kwok runs them): what the controller must hold and skip."""

    def one(i: int) -> None:
        kube.create(
            resources.PODS,
            {
                "metadata": {
                    "name": f"plain-{i}",
                    "namespace": NS,
                    "labels": {"app": f"a{i % 50}"},
                },
                "spec": {
                    "nodeName": nodes[i % len(nodes)],
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            "env": [{"name": f"E{k}", "value": "x" * 40} for k in range(10)],
                        }
                    ],
                },
            },
        )

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(PODS - GATED)))


def main() -> int:  # noqa: PLR0915 - one linear measurement script
    root = Path(tempfile.mkdtemp(prefix="gpudra-scale-", dir="/tmp"))
    binaries = locate()
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "nodes": NODES,
        "pods": PODS,
        "gated": GATED,
        "rate": RATE,
        "k8s_version": binaries.k8s_version,
    }
    with LocalCluster(binaries=binaries, work_dir=root) as cluster:
        kube = cluster.client()
        kube.apply(resources.DEVICECLASSES, CLASS, field_manager="bench")
        kube.create(resources.NAMESPACES, {"metadata": {"name": NS}})
        t = time.perf_counter()
        nodes = setup(kube)
        plain_pods(kube, nodes)
        result["setup_s"] = time.perf_counter() - t
        print(f"setup: {result['setup_s']:.0f}s", flush=True)
        ctl = controller(cluster, root / "controller.log")
        try:
            time.sleep(20)  # let it list and settle (not a measurement: the idle window is)
            before = requests_by_verb(kube)
            time.sleep(IDLE_S)
            after = requests_by_verb(kube)
            result["idle_lists_per_s"] = (after["LIST"] - before["LIST"]) / IDLE_S
            result["idle_watches_per_s"] = (after["WATCH"] - before["WATCH"]) / IDLE_S
            result["rss_idle_mib"] = rss_mib(ctl.pid)
            print(f"idle: {result}", flush=True)
            allocated: dict[str, float] = {}
            bound: dict[str, float] = {}

            def seen_claim(c: dict[str, Any]) -> dict[str, Any]:
                if (c.get("status") or {}).get("allocation"):
                    allocated.setdefault(c["metadata"]["name"], time.perf_counter())
                return {"metadata": c["metadata"]}

            def seen_pod(p: dict[str, Any]) -> dict[str, Any]:
                if (p.get("spec") or {}).get("nodeName"):
                    bound.setdefault(p["metadata"]["name"], time.perf_counter())
                return {"metadata": p["metadata"]}

            stop = threading.Event()
            for inf in (
                Informer(kube, resources.RESOURCECLAIMS, transform=seen_claim),
                Informer(kube, resources.PODS, transform=seen_pod),
            ):
                threading.Thread(target=inf.run, args=(stop,), daemon=True).start()
                inf.synced.wait(120)
            created: dict[str, float] = {}
            for i in range(GATED):
                name = f"g-{i}"
                kube.create(
                    resources.RESOURCECLAIMS,
                    {
                        "metadata": {"name": name, "namespace": NS},
                        "spec": {
                            "devices": {
                                "requests": [
                                    {"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io"}}
                                ]
                            }
                        },
                    },
                )
                created[name] = time.perf_counter()
                kube.create(
                    resources.PODS,
                    {
                        "metadata": {"name": name, "namespace": NS},
                        "spec": {
                            "schedulingGates": [{"name": "gpudra.io/topology"}],
                            "containers": [
                                {
                                    "name": "c",
                                    "image": "busybox",
                                    "resources": {"claims": [{"name": "g"}]},
                                }
                            ],
                            "resourceClaims": [{"name": "g", "resourceClaimName": name}],
                        },
                    },
                )
                time.sleep(max(0.0, created[name] + 1 / RATE - time.perf_counter()))
            deadline = time.perf_counter() + 300
            while len(bound.keys() & created.keys()) < GATED and time.perf_counter() < deadline:
                time.sleep(0.2)
            stop.set()
            result["rss_after_mib"] = rss_mib(ctl.pid)

            def q(marks: dict[str, float]) -> tuple[float, float, int]:
                lat = sorted(marks[n] - created[n] for n in created if n in marks)
                if len(lat) < 2:
                    return (lat[0] if lat else 0.0, lat[0] if lat else 0.0, len(lat))
                qs = statistics.quantiles(lat, n=100)
                return qs[49], qs[98], len(lat)

            result["allocated_p50_s"], result["allocated_p99_s"], result["allocated"] = q(allocated)
            result["bound_p50_s"], result["bound_p99_s"], result["bound"] = q(bound)
        finally:
            ctl.terminate()
            ctl.wait(15)
    (REPO / "bench" / "e2e" / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
