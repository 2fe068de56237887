"""Keep only what the controller reads of a pod (pure).

A listed pod is ~40 KB of JSON (managedFields, env, volumes, probes); the controller reads a
few fields: identity and labels, gates, claims, what node fit needs (requests, node
selector, node affinity, tolerations), phase and claim statuses.  Holding only those keeps a
10,000-pod cluster well inside the chart's memory limit.
"""

from __future__ import annotations

from typing import Any

_META = ("name", "namespace", "uid", "labels", "deletionTimestamp", "resourceVersion")
_SPEC = ("nodeName", "schedulingGates", "resourceClaims", "nodeSelector", "tolerations")
_STATUS = ("phase", "resourceClaimStatuses")


def _requests(containers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"resources": {"requests": (c.get("resources") or {}).get("requests") or {}}}
        for c in containers or []
    ]


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    out_spec: dict[str, Any] = {k: spec[k] for k in _SPEC if k in spec}
    out_spec["containers"] = _requests(spec.get("containers"))
    if spec.get("initContainers"):
        out_spec["initContainers"] = _requests(spec.get("initContainers"))
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity")
    if node_affinity:
        out_spec["affinity"] = {"nodeAffinity": node_affinity}
    return {
        "metadata": {k: meta[k] for k in _META if k in meta},
        "spec": out_spec,
        "status": {k: status[k] for k in _STATUS if k in status},
    }


def slim_node(node: dict[str, Any]) -> dict[str, Any]:
    """A node as fit and the allocator read it: identity and labels, taints and cordon,
    allocatable (not its conditions, images or heartbeats)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "uid", "labels", "resourceVersion") if k in meta},
        "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
        "status": {"allocatable": status.get("allocatable") or {}},
    }
