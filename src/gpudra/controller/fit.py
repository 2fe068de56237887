"""Does a pod fit a node as kube-scheduler will judge it? (pure)

The controller must only pick nodes where the scheduler will then bind the pod: node
selector and required node affinity, taints (NoSchedule/NoExecute) against tolerations,
node readiness, and allocatable cpu, memory and pods against what the node's pods request.
Quantities are exact (``allocation.quantity``), as the scheduler's are: ten pods of
``100m`` fill one CPU, and one ``1n`` more does not fit.  Taints are matched by the same
rule the allocator applies to device taints (``allocation.tolerations``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudra.allocation.nodeselect import selector_matches
from gpudra.allocation.quantity import Quantity, parse_quantity
from gpudra.allocation.tolerations import Toleration, untolerated
from gpudra.api.meta import labels_of
from gpudra.api.node import node_allocatable, node_taints, node_unschedulable
from gpudra.api.pod import (
    container_requests,
    pod_containers,
    pod_init_containers,
    pod_is_finished,
    pod_node_selector,
    pod_required_node_selector,
    pod_tolerations,
)

ZERO = Quantity.of(0)
ONE = Quantity.of(1)
UNCHECKED_IF_UNLISTED = ("cpu", "memory", "pods")  # absent from allocatable: not limited


def amount(text: str | int | None) -> Quantity:
    """A resource quantity, exactly (absent: zero).  Raises ``QuantityError`` (a
    ValueError) for text the API server would not accept either."""
    return ZERO if text is None else parse_quantity(str(text).strip())


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Quantity]:
    """Effective requests: max(sum of containers, any init container), plus one pod."""
    total: dict[str, Quantity] = {}
    for c in pod_containers(pod):
        for k, v in container_requests(c).items():
            total[k] = total.get(k, ZERO) + amount(v)
    for c in pod_init_containers(pod):
        for k, v in container_requests(c).items():
            total[k] = max(total.get(k, ZERO), amount(v))
    total["pods"] = ONE
    return total


def fit_problem(
    pod: Mapping[str, Any], node: Mapping[str, Any], pods_on_node: list[dict[str, Any]]
) -> str | None:
    """Why the scheduler would not put ``pod`` on ``node``; None if it would."""
    labels = labels_of(node)
    for k, v in pod_node_selector(pod).items():
        if labels.get(k) != v:
            return f"node selector {k}={v} does not match"
    required = pod_required_node_selector(pod)
    if required and not selector_matches(required, node):
        return "required node affinity does not match"
    if node_unschedulable(node):
        return "node is cordoned"
    tolerations = [Toleration.from_wire(t) for t in pod_tolerations(pod)]
    taint = untolerated(node_taints(node), tolerations)
    if taint is not None:
        return f"untolerated node taint {taint.get('key')}:{taint.get('effect')}"
    allocatable = node_allocatable(node)
    used: dict[str, Quantity] = {}
    for other in pods_on_node:
        if pod_is_finished(other):
            continue
        for resource, request in pod_requests(other).items():
            used[resource] = used.get(resource, ZERO) + request
    for k, want in pod_requests(pod).items():
        if k not in allocatable:
            if k in UNCHECKED_IF_UNLISTED:
                continue
            return f"node has no allocatable {k}"
        if used.get(k, ZERO) + want > amount(allocatable[k]):
            return f"insufficient {k}"
    return None
