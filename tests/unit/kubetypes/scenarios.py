"""Scenarios for the Kubernetes value types that their callers' tests share."""

from __future__ import annotations

from typing import Any

# One table for every caller of kubetypes.tolerations (the allocator's device taints, the
# controller's node taints): name -> (taint, tolerations, tolerated).
TAINT = {"key": "k", "value": "v", "effect": "NoSchedule"}
TOLERATIONS: dict[str, tuple[dict[str, Any], list[dict[str, Any]], bool]] = {
    "no tolerations": (TAINT, [], False),
    "Exists on the key": (TAINT, [{"key": "k", "operator": "Exists"}], True),
    "Exists with no key tolerates every taint": (TAINT, [{"operator": "Exists"}], True),
    "Exists on another key": (TAINT, [{"key": "j", "operator": "Exists"}], False),
    "Equal is the default operator": (TAINT, [{"key": "k", "value": "v"}], True),
    "Equal, same value and effect": (
        TAINT,
        [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}],
        True,
    ),
    "Equal, other value": (TAINT, [{"key": "k", "operator": "Equal", "value": "w"}], False),
    "Equal, no value against a taint without one": (
        {"key": "k", "effect": "NoSchedule"},
        [{"key": "k", "operator": "Equal"}],
        True,
    ),
    "the effect must match": (
        TAINT,
        [{"key": "k", "operator": "Exists", "effect": "NoExecute"}],
        False,
    ),
    "no effect matches every effect": (
        {"key": "k", "value": "v", "effect": "NoExecute"},
        [{"key": "k", "operator": "Exists"}],
        True,
    ),
    "NoExecute untolerated": ({"key": "k", "effect": "NoExecute"}, [], False),
    "one of several tolerations is enough": (
        TAINT,
        [{"key": "j", "operator": "Exists"}, {"key": "k", "value": "v"}],
        True,
    ),
    "PreferNoSchedule keeps nothing away": (
        {"key": "k", "effect": "PreferNoSchedule"},
        [],
        True,
    ),
}
