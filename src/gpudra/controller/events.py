"""What the controller tells a user about a pod: an Event and the pod's placement condition
(pure builders; the reconciler sends them).

Both carry the same reason and message, cut as an Event may carry it (``gpudra.api.events``,
the builder every component's Events go through).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudra.api.events import MAX_EVENT_MESSAGE, EventType, cut, event
from gpudra.api.meta import name_of, namespace_of, uid_of

__all__ = ["MAX_EVENT_MESSAGE", "EventType", "condition_patch", "cut", "pod_event"]

COMPONENT = "gpudra-controller"
CONDITION = "gpudra.io/Placement"


def pod_event(
    pod: Mapping[str, Any], kind: EventType, reason: str, message: str, *, now: str
) -> dict[str, Any]:
    """A core/v1 Event about ``pod`` (``now``: RFC 3339)."""
    involved = {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": name_of(pod),
        "namespace": namespace_of(pod),
        "uid": uid_of(pod) or None,
    }
    return event(involved, kind, reason, message, now=now, component=COMPONENT)


def condition_patch(placed: bool, reason: str, message: str, *, now: str) -> dict[str, Any]:
    """A strategic-merge patch of the pod's status setting the ``gpudra.io/Placement``
    condition (True once its claims are allocated and the gate removed)."""
    return {
        "status": {
            "conditions": [
                {
                    "type": CONDITION,
                    "status": "True" if placed else "False",
                    "reason": reason,
                    "message": cut(message),
                    "lastTransitionTime": now,
                }
            ]
        }
    }
