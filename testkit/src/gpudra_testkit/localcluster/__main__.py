"""``python -m gpudra_testkit.localcluster up|down|status``: a local cluster that outlives
the command.

``up`` starts a detached `LocalCluster` in a directory (default ``~/.cache/gpudra/cluster``),
records the pids in ``state.json`` and prints ``export KUBECONFIG=...``; ``--real-nodes 1`` adds
a real kubelet + containerd node (root).  ``down`` stops exactly
the recorded processes (pid plus start time, so a recycled pid is never signalled) and checks
that none is left; a real node's containers are killed and the host is put back as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from gpudra_testkit.localcluster.binaries import BinariesMissing, cache_dir
from gpudra_testkit.localcluster.launcher import LocalCluster
from gpudra_testkit.localcluster.probes import ClusterStartError
from gpudra_testkit.localcluster.process import is_running, terminate
from gpudra_testkit.localcluster.realnode import STATE_FILE as REALNODE_STATE
from gpudra_testkit.localcluster.realnode import RealNodeError, stop_detached

STATE_FILE = "state.json"


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return state if isinstance(state, dict) else None


def _recorded(state: dict[str, Any]) -> dict[int, int | None]:
    """pid -> start time, last started first (the order to stop them in)."""
    return {int(p["pid"]): p.get("start_time") for p in reversed(state.get("processes", []))}


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / STATE_FILE)


def up(
    directory: Path, version: str | None, *, device_taint_rules: bool, real_nodes: int = 0
) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    state = _read_state(directory)
    if state and any(is_running(pid, st) for pid, st in _recorded(state).items()):
        print(f"a cluster is already running in {directory}; run `down` first", file=sys.stderr)
        return 1
    (directory / STATE_FILE).unlink(missing_ok=True)
    try:
        cluster = LocalCluster(
            version=version,
            work_dir=directory,
            detach=True,
            device_taint_rules=device_taint_rules,
            real_nodes=real_nodes,
        )
        cluster.start()
    except (BinariesMissing, ClusterStartError, RealNodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = cluster.startup_seconds
    state = cluster.release()
    _write_state(directory, state)
    print(
        f"# Kubernetes {state['version']} at {state['server']} ready in {seconds:.1f}s; "
        f"logs in {directory / 'logs'}",
        file=sys.stderr,
    )
    for node in state["real_nodes"]:
        where = f"kubelet + containerd in {node['work_dir']}"
        print(f"# real node {node['name']}: {where}", file=sys.stderr)
    print(f"export KUBECONFIG={directory / 'kubeconfig'}")
    return 0


def down(directory: Path) -> int:
    state = _read_state(directory)
    if state is None:
        print(f"no cluster recorded in {directory}", file=sys.stderr)
        return 0
    names = {int(p["pid"]): str(p["name"]) for p in state.get("processes", [])}
    changed = []
    for node in state.get("real_nodes", []):
        changed += [f"{node['name']}: {d}" for d in stop_detached(Path(node["work_dir"]))]
    left = terminate(_recorded(state))
    if left:
        print("still running: " + ", ".join(f"{names[p]} ({p})" for p in left), file=sys.stderr)
        return 1
    if changed:
        print("the host still differs: " + "; ".join(changed), file=sys.stderr)
        return 1
    (directory / STATE_FILE).unlink(missing_ok=True)
    print(f"stopped {len(names)} processes of the cluster in {directory}", file=sys.stderr)
    return 0


def status(directory: Path) -> int:
    state = _read_state(directory)
    if state is None:
        print(f"no cluster recorded in {directory}")
        return 1
    alive = 0
    processes = list(state.get("processes", []))
    for node in state.get("real_nodes", []):
        with contextlib.suppress(OSError, ValueError):
            recorded = json.loads((Path(node["work_dir"]) / REALNODE_STATE).read_text())
            processes += [
                {**p, "name": f"{node['name']}/{p['name']}"} for p in recorded["processes"]
            ]
    for p in processes:
        running = is_running(int(p["pid"]), p.get("start_time"))
        alive += running
        print(f"{p['name']:<24} pid {p['pid']:<8} {'running' if running else 'GONE'}")
    return 0 if alive == len(processes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpudra_testkit.localcluster", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = Path(os.environ.get("GPUDRA_CLUSTER_DIR") or cache_dir() / "cluster")
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=default_dir, help="cluster work directory")
        if name == "up":
            p.add_argument("--version", help="Kubernetes version (default: versions.env)")
            p.add_argument(
                "--device-taint-rules",
                action="store_true",
                help="also serve the DeviceTaintRule API where it is off by default",
            )
            p.add_argument(
                "--real-nodes",
                type=int,
                default=0,
                choices=(0, 1),
                help="also run a real kubelet + containerd node (root; make node-prereqs)",
            )
    args = parser.parse_args(argv)
    directory = args.dir.expanduser().resolve()
    if args.command == "up":
        return up(
            directory,
            args.version,
            device_taint_rules=args.device_taint_rules,
            real_nodes=args.real_nodes,
        )
    if args.command == "down":
        return down(directory)
    return status(directory)


if __name__ == "__main__":
    sys.exit(main())
