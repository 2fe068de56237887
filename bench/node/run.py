"""The node daemon under load (``make bench``): prepare latency, republish time, RSS, idle CPU.

One local control plane; one real ``gpudra kubelet-plugin`` process per scenario (mock
backend, launched as the chart deploys it), on a kwok node, driven by the kubelet stand-in
over the real registration and DRA sockets (``gpudra_testkit.harness.kubelet``), as the
kubelet drives it.  For each concurrency level, that many claims are created with pods
pinned to the node, kube-scheduler allocates them, and then every claim's
NodePrepareResources call is made at once, one call per claim from its own thread (the
kubelet prepares each pod separately); then all are unprepared the same way and removed.
A call's latency is from sending it to its answer; every claim must prepare without error.

Scenarios (the levels a node can hold):
- whole GPUs on a DGX H100: 1 and 8 claims of one GPU;
- dynamic MIG on a DGX H100: 1, 10 and 56 claims of one 1g.10gb placement (instances are
  created at prepare);
- shares on a DGX H100 (``--shared-gpus all``): 1, 10 and 100 claims of 6Gi, one MPS daemon
  per GPU started by the first share on it.

Then, on the whole-GPU daemon: the time from the kubelet's slice wipe (what a starting
kubelet does) to the node's slices being back, RSS once idle after the runs, and CPU time
over an idle window (reported per hour).  The reference: dra-example-driver's published
NodePrepareResources p99 of at most 0.1 s.  Writes bench/node/results.json and
bench/node-prepare.png; bench/allocator/run.py puts the table into bench/RESULTS.md.
Knobs: BENCH_NODE_IDLE_S (idle window, default 60), BENCH_NODE_REPEAT (single-claim
repetitions, default 20).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.e2e.run import rss_mib
from gpudra.kube import KubeClient, NotFound, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import claim, exactly, mig_profiles, pod
from gpudra_testkit.deviceclasses import shipped
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster import LocalCluster, fake_node, locate

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "node" / "results.json"
NS = "node-bench"
IDLE_S = float(os.environ.get("BENCH_NODE_IDLE_S", "60"))
REPEAT = int(os.environ.get("BENCH_NODE_REPEAT", "20"))
SCENARIOS: tuple[tuple[str, str, list[str], tuple[int, ...]], ...] = (
    ("whole GPU", "dgx-h100", [], (1, 8)),
    ("dynamic MIG 1g.10gb", "dgx-h100-mig", ["--dynamic-mig-gpus", "all"], (1, 10, 56)),
    ("share of 6Gi (MPS)", "dgx-h100", ["--shared-gpus", "all"], (1, 10, 100)),
)


def say(text: str) -> None:
    print(f"[node-bench] {text}", flush=True)


def request(kind: str) -> dict[str, Any]:
    if kind.startswith("dynamic MIG"):
        return exactly("g", 1, cls="mig.gpudra.io", selectors=mig_profiles("1g.10gb"))
    if kind.startswith("share"):
        return exactly("g", 1, capacity={"requests": {"memory": "6Gi"}})
    return exactly("g", 1)


def allocated(kube: KubeClient, names: list[str]) -> list[tuple[str, str, str]] | None:
    got = {
        c["metadata"]["name"]: c for c in kube.list(resources.RESOURCECLAIMS, namespace=NS).items
    }
    if not all((got.get(n, {}).get("status") or {}).get("allocation") for n in names):
        return None
    return [(NS, n, got[n]["metadata"]["uid"]) for n in names]


def one_level(
    kube: KubeClient, harness: KubeletHarness, node_name: str, *, kind: str, k: int, tag: str
) -> tuple[list[float], list[float]]:
    """Prepare ``k`` claims at once, then unprepare them at once: the call latencies."""
    names = [f"{tag}-{i}" for i in range(k)]
    for n in names:
        body = claim(request(kind), name=n, namespace=NS)
        del body["metadata"]["uid"]
        kube.create(resources.RESOURCECLAIMS, body)
        kube.create(resources.PODS, pod(n, NS, n, node=node_name))
    refs = wait_for(f"{k} claims allocated", lambda: allocated(kube, names), 120)
    plugin = harness.plugins[DRIVER_NAME]

    def prepare(ref: tuple[str, str, str]) -> float:
        t = time.perf_counter()
        out = plugin.prepare([ref])[ref[2]]
        took = time.perf_counter() - t
        if out.error:
            raise RuntimeError(f"prepare of {ref[1]} failed: {out.error}")
        return took

    def unprepare(ref: tuple[str, str, str]) -> float:
        t = time.perf_counter()
        out = plugin.unprepare([ref])
        took = time.perf_counter() - t
        if out[ref[2]]:
            raise RuntimeError(f"unprepare of {ref[1]} failed: {out[ref[2]]}")
        return took

    with ThreadPoolExecutor(k) as ex:
        prepared = list(ex.map(prepare, refs))
    with ThreadPoolExecutor(k) as ex:
        unprepared = list(ex.map(unprepare, refs))
    for n in names:
        for res in (resources.PODS, resources.RESOURCECLAIMS):
            with contextlib.suppress(NotFound):
                kube.delete(res, n, namespace=NS, grace_period_seconds=0)
    wait_for("claims gone", lambda: not kube.list(resources.RESOURCECLAIMS, namespace=NS).items)
    return prepared, unprepared


def stats(values: list[float]) -> dict[str, float]:
    if len(values) == 1:
        return {"p50_ms": values[0] * 1e3, "p99_ms": values[0] * 1e3, "max_ms": values[0] * 1e3}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "max_ms": max(values) * 1e3}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def scenario(
    kube: KubeClient,
    kubeconfig: Path,
    root: Path,
    spec: tuple[str, str, list[str], tuple[int, ...]],
    extra: dict[str, Any],
    *,
    first: bool,
) -> dict[str, Any]:
    """One scenario's daemon and its levels; the ``first`` (whole-GPU) daemon also gives the
    republish time, RSS and idle CPU (into ``extra``)."""
    kind, profile, args, levels = spec
    node_name = f"bench-{profile}-{'first' if first else 'n'}"
    kube.create(resources.NODES, fake_node(node_name, pods="200"))
    daemon = NodeDaemon(
        node_name, profile, kubeconfig, root / node_name, ["--gc-interval-s", "5", *args]
    )
    daemon.start()
    harness = KubeletHarness(node_name=node_name, registry_dir=daemon.registry_dir, kube=kube)
    harness.wait_for_plugin(DRIVER_NAME)
    out: dict[str, Any] = {"kind": kind, "profile": profile, "args": args, "levels": []}
    try:
        wait_for(
            "slices published",
            lambda: (
                kube.list(
                    resources.RESOURCESLICES, field_selector=f"spec.nodeName={node_name}"
                ).items
            ),
        )
        for k in levels:
            rounds = REPEAT if k == 1 else 1
            say(f"{kind}: {k} concurrent claim(s) x {rounds}")
            prep: list[float] = []
            unprep: list[float] = []
            for r in range(rounds):
                p, u = one_level(
                    kube, harness, node_name, kind=kind, k=k, tag=f"{profile[:8]}-{k}-{r}"
                )
                prep += p
                unprep += u
            out["levels"].append(
                {
                    "claims": k,
                    "calls": len(prep),
                    "prepare": stats(prep),
                    "unprepare": stats(unprep),
                    "samples": prep,
                }
            )
        if first:
            assert daemon.proc is not None
            t = time.perf_counter()
            wiped = harness.wipe_slices()
            wait_for(
                "slices republished",
                lambda: (
                    len(
                        kube.list(
                            resources.RESOURCESLICES, field_selector=f"spec.nodeName={node_name}"
                        ).items
                    )
                    >= wiped
                ),
            )
            extra["republish_s"] = time.perf_counter() - t
            pid = daemon.proc.pid
            time.sleep(2)
            extra["rss_mib"] = rss_mib(pid)
            say(f"idle CPU over {IDLE_S:.0f} s")
            before, t = cpu_seconds(pid), time.perf_counter()
            time.sleep(IDLE_S)
            used, span = cpu_seconds(pid) - before, time.perf_counter() - t
            extra["idle_cpu_s_per_hour"] = used / span * 3600
            extra["idle_window_s"] = span
            extra["rss_after_idle_mib"] = rss_mib(pid)
        else:
            assert daemon.proc is not None
            extra[f"rss_mib_{kind}"] = rss_mib(daemon.proc.pid)
    finally:
        harness.close()
        daemon.stop()
        kube.delete(resources.NODES, node_name)
    return out


def plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        for level in run["levels"]:
            xs = sorted(s * 1e3 for s in level["samples"])
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=f"{run['kind']}, {level['claims']} at once")
    ax.axvline(100, color="grey", linestyle="--", label="dra-example-driver p99 (100 ms)")
    ax.set_xscale("log")
    ax.set_xlabel("NodePrepareResources latency, ms")
    ax.set_ylabel("share of calls")
    ax.set_title(f"Node daemon prepare latency ({platform.machine()}, {os.cpu_count()} cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(REPO / "bench" / "node-prepare.png", dpi=100)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="gpudra-nb-", dir="/tmp"))
    binaries = locate()
    extra: dict[str, Any] = {}
    runs = []
    try:
        with LocalCluster(binaries=binaries, work_dir=root / "cp") as cluster:
            kube = cluster.client()
            for d in shipped().values():
                kube.apply(resources.DEVICECLASSES, d, field_manager="bench")
            kube.create(resources.NAMESPACES, {"metadata": {"name": NS}})
            runs += [
                scenario(kube, cluster.kubeconfig, root, spec, extra, first=i == 0)
                for i, spec in enumerate(SCENARIOS)
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    doc = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "k8s_version": binaries.k8s_version,
        "runs": runs,
        **extra,
    }
    plot(runs)
    for r in doc["runs"]:
        for level in r["levels"]:
            del level["samples"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["runs"]:
        for level in r["levels"]:
            say(
                f"{r['kind']}, {level['claims']} at once: prepare p50 {level['prepare']['p50_ms']:.1f} ms, p99 {level['prepare']['p99_ms']:.1f} ms"
            )
    say(
        f"republish {extra['republish_s']:.2f} s, RSS {extra['rss_mib']:.0f} MiB, idle CPU {extra['idle_cpu_s_per_hour']:.1f} s/h"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
