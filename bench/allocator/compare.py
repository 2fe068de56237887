"""gpudra's allocator against the allocator kube-scheduler uses, in process, identical inputs.

The upstream side is ``bench/draalloc`` (Go, ``k8s.io/dynamic-resource-allocation``
``structured`` at the version of the default local control plane, with the features
kube-scheduler enables by default there), built from the Go module proxy on first use.  Both
get the same JSON: ResourceSlices from gpudra's own slice builder for mock profiles (DGX H100,
DGX-1V, DGX A100, HGX H200, DGX H100 with dynamic MIG: placements drawing on counters), the
shipped DeviceClasses, and a seeded claim mix (1, 2, 4 and 8 GPUs, CEL selectors on capacity
and architecture, ``matchAttribute`` on the NVLink group, MIG placements).  Claims are
allocated one after another and allocations accumulate, as pods scheduled one at a time:

- gpudra: the best placement over every feasible node, scored;
- upstream, ``first``: Allocate node by node until one succeeds (a short-circuiting Filter);
- upstream, ``all``: Allocate on every node, as kube-scheduler's Filter does;
- upstream, ``check``: each claim on the state gpudra's allocations built, so a claim one
  places and the other cannot on the same state is a semantic disagreement (printed).

Reports claims/s, per-claim p50/p99, claims placed, and quality on the DGX-1V nodes: the
share of multi-GPU claims whose GPUs are a maximum-bandwidth set among the node's GPUs free
at that moment.  Writes bench/allocator/compare.json (run.py puts it in RESULTS.md) and
bench/allocator-compare.png.  Knobs: BENCH_COMPARE_NODES (e.g. ``50,200,500``), BENCH_SEED.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.inputs import Device, parse_claim
from gpudra.allocation.score import is_whole_gpu, topology_of
from gpudra.catalogue.attributes import NVLINK_GROUP
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import cel, claim, exactly, mig_profiles, node, profile_slices
from gpudra_testkit.deviceclasses import shipped
from gpudra_testkit.localcluster.binaries import default_k8s_version

REPO = Path(__file__).resolve().parents[2]
GO_DIR = REPO / "bench" / "draalloc"
OUT = REPO / "bench" / "allocator" / "compare.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpudra" / "bench"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_COMPARE_NODES", "50,200,500").split(","))
SEED = int(os.environ.get("BENCH_SEED", "1"))
CLAIMS_PER_NODE = 3
PROFILES = ("dgx-h100", "dgx1-v100", "dgx-a100", "hgx-h200", "dgx-h100-mig")
SELECTORS = (
    "device.capacity['gpu.gpudra.io'].memory.compareTo(quantity('80Gi')) >= 0",
    "device.attributes['gpu.gpudra.io'].architecture == 'Hopper'",
    "device.attributes['gpu.gpudra.io'].productName.startsWith('Tesla')",
)
NVLINK = f"{DRIVER_NAME}/{NVLINK_GROUP}"


def say(text: str) -> None:
    print(f"[compare] {text}", flush=True)


def build_go() -> Path:
    """The upstream side's binary, built once per source change (go.sum pins the modules)."""
    binary = CACHE / "draalloc"
    sources = [GO_DIR / n for n in ("main.go", "go.mod", "go.sum")]
    if binary.exists() and all(binary.stat().st_mtime >= s.stat().st_mtime for s in sources):
        say(f"upstream allocator: cached {binary}")
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    say(
        "upstream allocator: building bench/draalloc (k8s.io/dynamic-resource-allocation, a few minutes cold)"
    )
    t = time.perf_counter()
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=GO_DIR,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    say(f"upstream allocator: built in {time.perf_counter() - t:.0f} s")
    return binary


def cluster(n: int, rng: random.Random) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    names = [f"n{i:03d}" for i in range(n)]
    profiles = {name: rng.choice(PROFILES) for name in names}
    slices = []
    for name in names:
        profile = profiles[name]
        dynamic = frozenset(range(8)) if profile == "dgx-h100-mig" else frozenset()
        for s in profile_slices(profile, name, dynamic_mig=dynamic):
            meta = s.setdefault("metadata", {})
            meta.setdefault("name", f"{name}-slice-{len(slices)}")
            slices.append(dict(s, apiVersion="resource.k8s.io/v1", kind="ResourceSlice"))
    return names, slices, profiles


def claims(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        roll = rng.random()
        constraints: list[dict[str, Any]] = []
        if roll < 0.15:
            req = exactly(
                "g",
                1,
                cls="mig.gpudra.io",
                selectors=mig_profiles(rng.choice(["1g.10gb", "2g.20gb", "3g.40gb"])),
            )
        elif roll < 0.22:
            req = exactly("g", 8)
        elif roll < 0.32:
            req = exactly("g", 4)
            constraints = [{"requests": ["g"], "matchAttribute": NVLINK}]
        elif roll < 0.47:
            req = exactly("g", 2)
            if rng.random() < 0.5:
                constraints = [{"requests": ["g"], "matchAttribute": NVLINK}]
        elif roll < 0.67:
            req = exactly("g", 1, selectors=cel(rng.choice(SELECTORS)))
        else:
            req = exactly("g", 1)
        req["exactly"]["allocationMode"] = "ExactCount"  # the API server's default
        c = claim(req, constraints=constraints, name=f"c{i}", namespace="bench")
        c["apiVersion"], c["kind"] = "resource.k8s.io/v1", "ResourceClaim"
        c["metadata"]["uid"] = f"00000000-0000-0000-0000-{i:012d}"
        out.append(c)
    return out


def classes() -> list[dict[str, Any]]:
    return list(shipped().values())


def quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def run_gpudra(
    names: list[str], slices: list[dict[str, Any]], raw: list[dict[str, Any]]
) -> dict[str, Any]:
    view = ClusterView.from_objects(
        slices=slices, classes=classes(), nodes=[node(n) for n in names]
    )
    alloc = Allocator(view)
    times, placed, applied, picks = [], 0, [], []
    for c in raw:
        parsed = parse_claim(c)
        t = time.perf_counter()
        out = alloc.allocate([parsed], names)
        if out.best is not None:
            alloc.commit(out.best)
        times.append(time.perf_counter() - t)
        if out.best is None:
            applied.append(None)
            picks.append(None)
            continue
        placed += 1
        allocation = out.best.allocation(parsed, timestamp="2026-12-01T00:00:00Z")
        applied.append(
            {
                "devices": {"results": allocation["devices"]["results"]},
                "nodeSelector": allocation["nodeSelector"],
            }
        )
        picks.append([f"{r['pool']}/{r['device']}" for r in allocation["devices"]["results"]])
    return {"times": times, "placed": placed, "applied": applied, "picks": picks}


def run_go(binary: Path, mode: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(binary), "-mode", mode],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
    )
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def bandwidth_quality(
    slices: list[dict[str, Any]],
    names: list[str],
    profiles: dict[str, str],
    picks: list[list[str] | None],
) -> tuple[int, int]:
    """(claims at a maximum-bandwidth set, multi-GPU claims placed) on the DGX-1V nodes,
    replaying one side's placements in order."""
    view = ClusterView.from_objects(
        slices=slices, classes=classes(), nodes=[node(n) for n in names]
    )
    by_name: dict[str, Device] = {f"{d.pool}/{d.name}": d for d in view.devices.values()}
    used: set[str] = set()
    best = total = 0
    for pick in picks:
        if not pick:
            continue
        devs = [by_name[p] for p in pick]
        pool = devs[0].pool
        gpus = [d for d in view.devices_for(pool) if is_whole_gpu(d)]
        if profiles[pool] == "dgx1-v100" and len(devs) > 1 and all(is_whole_gpu(d) for d in devs):
            topo, pos = topology_of(gpus)
            free = [pos[d.key] for d in gpus if f"{d.pool}/{d.name}" not in used]
            top = topo.best_bandwidth(len(devs), among=free)
            got = topo.set_bandwidth([pos[d.key] for d in devs])
            best += top <= 0 or got >= top * 0.999
            total += 1
        used.update(pick)
    return best, total


def one_size(binary: Path, n: int) -> dict[str, Any]:
    rng = random.Random(SEED * 1000 + n)
    names, slices, profiles = cluster(n, rng)
    raw = claims(rng, CLAIMS_PER_NODE * n)
    say(f"{n} nodes, {len(raw)} claims: gpudra")
    ours = run_gpudra(names, slices, raw)
    payload = {
        "slices": slices,
        "classes": classes(),
        "nodes": names,
        "claims": [{"claim": c, "apply": None} for c in raw],
    }
    result: dict[str, Any] = {
        "nodes": n,
        "claims": len(raw),
        "devices": sum(len(s["spec"].get("devices") or []) for s in slices),
    }
    for mode in ("first", "all"):
        say(f"{n} nodes: upstream ({mode})")
        theirs = run_go(binary, mode, payload)
        secs = [o["nanos"] / 1e9 for o in theirs]
        p50, p99 = quantiles(secs)
        q = bandwidth_quality(slices, names, profiles, [o["devices"] for o in theirs])
        errors = sorted({o["error"] for o in theirs if o.get("error")})
        result[f"upstream_{mode}"] = {
            "claims_per_s": len(raw) / sum(secs),
            "p50_ms": p50 * 1e3,
            "p99_ms": p99 * 1e3,
            "placed": sum(1 for o in theirs if o["node"]),
            "quality": q,
            "errors": errors[:5],
        }
    p50, p99 = quantiles(ours["times"])
    result["gpudra"] = {
        "claims_per_s": len(raw) / sum(ours["times"]),
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "placed": ours["placed"],
        "quality": bandwidth_quality(slices, names, profiles, ours["picks"]),
    }
    say(f"{n} nodes: upstream verdicts on gpudra's state")
    check = run_go(
        binary,
        "check",
        dict(
            payload,
            claims=[{"claim": c, "apply": a} for c, a in zip(raw, ours["applied"], strict=True)],
        ),
    )
    disagreements = [
        {
            "claim": raw[i]["metadata"]["name"],
            "spec": raw[i]["spec"],
            "gpudra": ours["picks"][i],
            "upstream": o["node"] or o.get("error", ""),
        }
        for i, o in enumerate(check)
        if bool(o["node"]) != (ours["picks"][i] is not None)
    ]
    for d in disagreements:
        print(f"DISAGREEMENT ({n} nodes): {json.dumps(d)}", file=sys.stderr)
    result["disagreements"] = disagreements
    return result


def plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    nodes = [r["nodes"] for r in runs]
    for key, label in (
        ("gpudra", "gpudra (best, scored)"),
        ("upstream_first", "upstream, first feasible node"),
        ("upstream_all", "upstream, every node (Filter)"),
    ):
        left.plot(nodes, [r[key]["claims_per_s"] for r in runs], marker="o", label=label)
        right.plot(nodes, [r[key]["p99_ms"] for r in runs], marker="o", label=label)
    for ax, title, unit in (
        (left, "claims per second", "claims/s"),
        (right, "per-claim p99", "ms"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes (8 GPUs each)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(
        f"Allocator in process, same inputs ({platform.machine()}, {os.cpu_count()} cores)"
    )
    fig.tight_layout()
    fig.savefig(REPO / "bench" / "allocator-compare.png", dpi=100)


def main() -> int:
    binary = build_go()
    runs = [one_size(binary, n) for n in SIZES]
    doc = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "k8s_version": default_k8s_version(),
        "seed": SEED,
        "runs": runs,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    plot(runs)
    for r in runs:
        g, f, a = r["gpudra"], r["upstream_first"], r["upstream_all"]
        say(
            f"{r['nodes']} nodes: gpudra {g['claims_per_s']:.0f}/s, upstream first {f['claims_per_s']:.0f}/s, "
            f"all {a['claims_per_s']:.0f}/s; disagreements {len(r['disagreements'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
