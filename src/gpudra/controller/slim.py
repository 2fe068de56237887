"""Keep only what the controller reads of a pod or node (pure).

A listed pod is ~40 KB of JSON (managedFields, env, volumes, probes); the controller reads a
few fields: identity and labels, gates, claims, what node fit needs (requests, node
selector, node affinity, tolerations), phase and claim statuses (``api.pod`` lists them).
Holding only those keeps a 10,000-pod cluster well inside the chart's memory limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudra.api.meta import metadata
from gpudra.api.node import node_allocatable, node_spec
from gpudra.api.pod import Container, container_requests, pod_node_affinity, pod_spec, pod_status

_META = ("name", "namespace", "uid", "labels", "deletionTimestamp", "resourceVersion")
_SPEC = ("nodeName", "schedulingGates", "resourceClaims", "nodeSelector", "tolerations")
_STATUS = ("phase", "resourceClaimStatuses")
_NODE_META = ("name", "uid", "labels", "resourceVersion")
_NODE_SPEC = ("taints", "unschedulable")


def _pick(body: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: body[k] for k in keys if k in body}


def _requests(containers: list[Container] | None) -> list[dict[str, Any]]:
    return [{"resources": {"requests": container_requests(c)}} for c in containers or []]


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    spec = pod_spec(pod)
    out_spec = _pick(spec, _SPEC)
    out_spec["containers"] = _requests(spec.get("containers"))
    if spec.get("initContainers"):
        out_spec["initContainers"] = _requests(spec.get("initContainers"))
    node_affinity = pod_node_affinity(pod)
    if node_affinity:
        out_spec["affinity"] = {"nodeAffinity": node_affinity}
    return {
        "metadata": _pick(metadata(pod), _META),
        "spec": out_spec,
        "status": _pick(pod_status(pod), _STATUS),
    }


def slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """A node as fit and the allocator read it: identity and labels, taints and cordon,
    allocatable (not its conditions, images or heartbeats)."""
    return {
        "metadata": _pick(metadata(node), _NODE_META),
        "spec": _pick(node_spec(node), _NODE_SPEC),
        "status": {"allocatable": node_allocatable(node)},
    }
