"""Core NodeSelector semantics (terms ORed, requirements ANDed), for slices and allocations.

Which pools and devices are reachable from a node, and the node selector an allocation
result carries, follow the same rules the scheduler applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudra.api.meta import labels_of, name_of


def _label_requirement(labels: dict[str, str], req: dict[str, Any]) -> bool:
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _field_requirement(node_name: str, req: dict[str, Any]) -> bool:
    if req.get("key") != "metadata.name":
        return False
    values = req.get("values") or []
    if req.get("operator") == "In":
        return node_name in values
    if req.get("operator") == "NotIn":
        return node_name not in values
    return False


def selector_matches(selector: Mapping[str, Any] | None, node: Mapping[str, Any]) -> bool:
    """True if ``node`` satisfies the NodeSelector (None matches every node)."""
    if selector is None:
        return True
    labels, name = labels_of(node), name_of(node)
    for term in selector.get("nodeSelectorTerms") or []:
        exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not fields:
            continue  # an empty term matches nothing
        if all(_label_requirement(labels, r) for r in exprs) and all(
            _field_requirement(name, r) for r in fields
        ):
            return True
    return False


def node_name_selector(node_name: str) -> dict[str, Any]:
    """The selector an allocation for a node-local device carries (what the scheduler writes)."""
    return {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
        ]
    }


def pinned_node_names(selector: Mapping[str, Any] | None) -> set[str] | None:
    """The node names a selector pins by ``metadata.name In`` (what ``node_name_selector``
    writes); None when it pins no name (absent, or by labels only)."""
    names: set[str] = set()
    for term in (selector or {}).get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In":
                names.update(req.get("values") or [])
    return names or None
