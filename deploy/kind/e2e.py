"""``make kind-e2e``: install the chart in mock mode on the kind cluster, run deploy/examples.

Each example's pod prints its environment; the check is that the container got exactly the
GPUs its claim asked for, through CDI: ``NVIDIA_VISIBLE_DEVICES`` lists that many distinct
GPU UUIDs, there is one ``GPUDRA_DEVICE_*`` variable per device carrying one of them,
``GPUDRA_CLAIM`` names the pod's claim, and the container has one ``/dev/nvidia<N>`` per GPU
plus the control nodes (the example prints ``device <path>`` for each ``/dev/nvidia*``).
The checks (`expected_devices`, `check_env`) are pure and unit-tested against the real
example files (tests/kind/); the run needs Docker and kind.  The same checks run on the local
real node (tests/integration/test_real_node.py, no Docker).

    python deploy/kind/e2e.py [--cluster gpudra] [--keep]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gpudra_testkit.harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
NAMESPACE = "gpudra-system"
UUID = re.compile(r"^GPU-[0-9a-f-]+$")
GPU_NODE = re.compile(r"^/dev/nvidia[0-9]+$")
CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm")


def expected_devices(docs: list[dict[str, Any]]) -> int:
    """How many devices the example's claims (or claim templates) ask for in total."""
    total = 0
    for d in docs:
        if d.get("kind") == "ResourceClaimTemplate":
            spec = d["spec"]["spec"]
        elif d.get("kind") == "ResourceClaim":
            spec = d["spec"]
        else:
            continue
        for r in spec["devices"]["requests"]:
            exactly = r.get("exactly") or {}
            if exactly.get("allocationMode", "ExactCount") != "ExactCount":
                raise ValueError(f"{r['name']}: allocationMode All has no fixed device count")
            total += int(exactly.get("count", 1))
    return total


def check_env(log: str, expected: int) -> list[str]:
    """What is wrong with a pod's printed environment, given the devices it should have."""
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    problems = []
    visible = [u for u in env.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if u]
    if len(visible) != expected or len(set(visible)) != expected:
        problems.append(f"NVIDIA_VISIBLE_DEVICES lists {visible}, expected {expected} GPU(s)")
    bad = [u for u in visible if not UUID.match(u)]
    if bad:
        problems.append(f"not GPU UUIDs: {bad}")
    per_device = {k: v for k, v in env.items() if k.startswith("GPUDRA_DEVICE_")}
    if len(per_device) != expected:
        problems.append(f"{len(per_device)} GPUDRA_DEVICE_* variable(s), expected {expected}")
    if set(per_device.values()) - set(visible):
        problems.append(f"GPUDRA_DEVICE_* UUIDs {sorted(per_device.values())} not all visible")
    if not env.get("GPUDRA_CLAIM"):
        problems.append("no GPUDRA_CLAIM: the claim's CDI edits were not applied")
    nodes = [line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("device ")]
    gpus = [n for n in nodes if GPU_NODE.match(n)]
    if len(gpus) != expected:
        problems.append(f"device nodes {gpus}, expected {expected} /dev/nvidia<N>")
    missing = [n for n in CONTROL_NODES if n not in nodes]
    if missing:
        problems.append(f"control device nodes missing: {missing}")
    return problems


# --- the run (Docker, kind, helm) ------------------------------------------------------------


def sh(*cmd: str, capture: bool = False) -> str:
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, check=True, text=True, capture_output=capture)
    return p.stdout if capture else ""


def tool(name: str) -> str:
    out = sh(str(REPO / "deploy" / "controlplane" / "build.sh"), name, capture=True)
    return str(Path(out.strip().splitlines()[-1]) / name)


def run(cluster: str, keep: bool) -> int:
    from gpudra.kube import KubeClient, resources

    kind, helm = tool("kind"), tool("helm")
    kubeconfig = Path(tempfile.mkdtemp()) / "kubeconfig"
    kubeconfig.write_text(sh(kind, "get", "kubeconfig", "--name", cluster, capture=True))
    sh(kind, "load", "docker-image", "gpudra:e2e", "--name", cluster)
    sh(
        helm,
        "upgrade",
        "--install",
        "gpudra",
        str(REPO / "charts" / "gpudra"),
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--values",
        str(REPO / "deploy" / "kind" / "values-e2e.yaml"),
        "--wait",
        "--timeout",
        "5m",
    )
    kube = KubeClient.from_kubeconfig(kubeconfig)
    workers = [
        n["metadata"]["name"]
        for n in kube.list(resources.NODES).items
        if "gpudra.io/mock-profile" in n["metadata"].get("labels", {})
    ]
    wait_for(
        "every worker publishes slices",
        lambda: all(
            kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={w}").items
            for w in workers
        ),
        120,
        interval=2.0,
    )
    failures = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        try:
            problems = run_example(kube, path, keep=keep)
        except Exception as e:  # report every scenario, then fail
            problems = [f"{type(e).__name__}: {e}"]
        print(f"{'FAIL' if problems else 'ok  '} {path.name}: {'; '.join(problems) or 'env ok'}")
        failures += [f"{path.name}: {p}" for p in problems]
    print(f"{len(failures)} problem(s)" if failures else "all examples passed")
    return 1 if failures else 0


def run_example(kube: Any, path: Path, *, keep: bool) -> list[str]:
    """Apply one example in its own namespace, wait for its pod, check what it printed."""
    from gpudra.kube import resources

    kinds = {
        "ResourceClaimTemplate": resources.RESOURCECLAIMTEMPLATES,
        "ResourceClaim": resources.RESOURCECLAIMS,
        "Pod": resources.PODS,
    }
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    ns = f"e2e-{path.stem}"
    pod = next(d["metadata"]["name"] for d in docs if d["kind"] == "Pod")
    kube.create(resources.NAMESPACES, {"metadata": {"name": ns}})
    try:
        for d in docs:
            kube.apply(kinds[d["kind"]], d, field_manager="gpudra-e2e", namespace=ns)

        def phase() -> str:
            return str(kube.get(resources.PODS, pod, namespace=ns).get("status", {}).get("phase"))

        wait_for(f"{ns}/{pod} running", lambda: phase() == "Running", 180, interval=2.0)
        log = wait_for(
            f"{ns}/{pod} log",
            lambda: kube.get_text(f"/api/v1/namespaces/{ns}/pods/{pod}/log"),
            60,
            interval=2.0,
        )
        return check_env(log, expected_devices(docs))
    finally:
        if not keep:
            kube.delete(resources.NAMESPACES, ns)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cluster", default="gpudra")
    p.add_argument("--keep", action="store_true", help="keep the example namespaces")
    args = p.parse_args()
    return run(args.cluster, args.keep)


if __name__ == "__main__":
    sys.exit(main())
