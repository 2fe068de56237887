"""Does a pod fit a node as kube-scheduler will judge it? (pure)

The controller must only pick nodes where the scheduler will then bind the pod: node
selector and required node affinity, taints (NoSchedule/NoExecute) against tolerations,
node readiness, and allocatable cpu, memory and pods against what the node's pods request.
"""

from __future__ import annotations

from typing import Any

from gpudra.allocation.nodeselect import selector_matches

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "m": 10**-3,
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def amount(text: str | int | float | None) -> float:
    """A resource quantity as a float (enough precision for fit checks)."""
    if text is None:
        return 0.0
    s = str(text).strip()
    for suffix, mult in _BINARY.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    for suffix in sorted(_DECIMAL, key=len, reverse=True):
        if suffix and s.endswith(suffix) and not s.endswith("e" + suffix):
            return float(s[: -len(suffix)]) * _DECIMAL[suffix]
    return float(s)


def pod_requests(pod: dict[str, Any]) -> dict[str, float]:
    """Effective requests: max(sum of containers, any init container), plus one pod."""
    spec = pod.get("spec") or {}
    total: dict[str, float] = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = total.get(k, 0.0) + amount(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = max(total.get(k, 0.0), amount(v))
    total["pods"] = 1.0
    return total


def _tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def fit_problem(
    pod: dict[str, Any], node: dict[str, Any], pods_on_node: list[dict[str, Any]]
) -> str | None:
    """Why the scheduler would not put ``pod`` on ``node``; None if it would."""
    spec, meta = pod.get("spec") or {}, node.get("metadata") or {}
    labels = meta.get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return f"node selector {k}={v} does not match"
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required and not selector_matches(required, node):
        return "required node affinity does not match"
    if (node.get("spec") or {}).get("unschedulable"):
        return "node is cordoned"
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, taint):
            return f"untolerated node taint {taint.get('key')}:{taint.get('effect')}"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    used: dict[str, float] = {}
    for other in pods_on_node:
        if (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for k, v in pod_requests(other).items():
            used[k] = used.get(k, 0.0) + v
    for k, want in pod_requests(pod).items():
        if k not in allocatable:
            if k in ("cpu", "memory", "pods"):
                continue
            return f"node has no allocatable {k}"
        if used.get(k, 0.0) + want > amount(allocatable[k]) + 1e-9:
            return f"insufficient {k}"
    return None
