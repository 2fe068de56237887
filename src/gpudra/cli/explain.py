"""``gpudra explain -f claim.yaml``: where would gpudra place this claim, or why can't it?

Reads the cluster state from a kubeconfig, or offline from directories of ResourceSlice and
DeviceClass manifests (YAML or JSON, one or many documents per file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gpudra.cli.shared_flags import kubeconfig_flags
from gpudra.common.errors import GpudraError
from gpudra.kube.client import KubeClient
from gpudra.kube.resources import DEVICECLASSES, NODES, RESOURCECLAIMS, RESOURCESLICES

if TYPE_CHECKING:
    from gpudra.allocation.cluster import ClusterView


class ExplainError(GpudraError):
    """Bad input for explain; one line for the user."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="best placement for a claim, or why it cannot be placed",
        description="Reads slices, classes, nodes and claims from --kubeconfig, or offline "
        "from --slices and --classes.",
        parents=[kubeconfig_flags()],
    )
    p.add_argument(
        "-f",
        "--file",
        type=Path,
        required=True,
        help="ResourceClaim(s) or ResourceClaimTemplate(s), YAML or JSON",
    )
    p.add_argument("--slices", type=Path, help="offline: directory of ResourceSlice manifests")
    p.add_argument("--classes", type=Path, help="offline: directory of DeviceClass manifests")
    p.add_argument("--node", action="append", help="only consider these node(s)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")


def load_docs(path: Path) -> list[dict[str, Any]]:
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
        if path.is_dir()
        else [path]
    )
    out: list[dict[str, Any]] = []
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except (OSError, yaml.YAMLError) as e:
            raise ExplainError(f"{f}: cannot read: {e}") from e
        for d in docs:
            if isinstance(d, dict) and d.get("kind", "").endswith("List"):
                out += d.get("items") or []
            elif isinstance(d, dict):
                out.append(d)
            elif d is not None:
                raise ExplainError(f"{f}: expected Kubernetes objects, got {type(d).__name__}")
    return out


def to_claim(doc: dict[str, Any]) -> dict[str, Any]:
    kind = doc.get("kind")
    if kind == "ResourceClaim":
        return doc
    if kind == "ResourceClaimTemplate":
        meta = doc.get("metadata") or {}
        return {
            "metadata": {
                "name": meta.get("name", "template"),
                "namespace": meta.get("namespace", "default"),
            },
            "spec": (doc.get("spec") or {}).get("spec") or {},
        }
    raise ExplainError(f"expected ResourceClaim or ResourceClaimTemplate, got kind {kind!r}")


def cluster_state(args: argparse.Namespace) -> ClusterView:
    from gpudra.allocation.cluster import ClusterView

    if args.kubeconfig:
        with KubeClient.from_kubeconfig(args.kubeconfig) as kube:
            return ClusterView.from_objects(
                slices=kube.list(RESOURCESLICES).items,
                classes=kube.list(DEVICECLASSES).items,
                nodes=kube.list(NODES).items,
                claims=kube.list(RESOURCECLAIMS).items,
            )
    if not (args.slices and args.classes):
        raise ExplainError("give --kubeconfig, or both --slices DIR and --classes DIR")
    return ClusterView.from_objects(
        slices=[d for d in load_docs(args.slices) if d.get("kind") == "ResourceSlice"],
        classes=[d for d in load_docs(args.classes) if d.get("kind") == "DeviceClass"],
        nodes=[],
    )


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every gpudra process builds the whole command line, and
    # the node daemons should not carry the allocator and its CEL library
    from gpudra.allocation.engine import Allocator
    from gpudra.allocation.explain import explain
    from gpudra.allocation.inputs import parse_claim

    docs = load_docs(args.file)
    if not docs:
        raise ExplainError(f"{args.file}: no claims found")
    claims = [parse_claim(to_claim(d)) for d in docs]  # InputError: main reports it
    view = cluster_state(args)
    outcome = Allocator(view).allocate(claims, args.node)
    if args.output == "json":
        best = outcome.best
        doc = {
            "feasible": outcome.feasible,
            "node": best.node if best else None,
            "score": best.score.total if best else None,
            "results": {c.ref: best.solution.results(c) for c in claims} if best else {},
            "runnerUp": outcome.runner_up.node if outcome.runner_up else None,
            "explanation": None if best else explain(outcome, claims),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(explain(outcome, claims))
    return 0 if outcome.feasible else 1
