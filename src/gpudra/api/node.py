"""``Node``: the fields node fit and the allocator read (labels, taints, cordon, allocatable)."""

from __future__ import annotations

from typing import TypedDict

from gpudra.api.meta import Object, ObjectMeta
from gpudra.api.taints import Taint


class NodeSpec(TypedDict, total=False):
    taints: list[Taint]
    unschedulable: bool


class NodeStatus(TypedDict, total=False):
    allocatable: dict[str, str]  # resource name -> quantity text


class Node(TypedDict, total=False):
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


def node_spec(node: Object) -> NodeSpec:
    spec: NodeSpec = node.get("spec") or {}
    return spec


def node_taints(node: Object) -> list[Taint]:
    return node_spec(node).get("taints") or []


def node_unschedulable(node: Object) -> bool:
    """Cordoned (``spec.unschedulable``)."""
    return bool(node_spec(node).get("unschedulable"))


def node_allocatable(node: Object) -> dict[str, str]:
    status: NodeStatus = node.get("status") or {}
    return status.get("allocatable") or {}
