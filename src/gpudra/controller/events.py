"""What the controller tells a user about a pod: an Event and the pod's placement condition
(pure builders; the reconciler sends them).

Both carry the same reason and message, cut to ``MAX_EVENT_MESSAGE`` characters (the API
server refuses a longer Event message), so a long explanation never costs the report.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from gpudra.api.meta import name_of, namespace_of, uid_of

MAX_EVENT_MESSAGE = 1024
COMPONENT = "gpudra-controller"
CONDITION = "gpudra.io/Placement"


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


def cut(message: str) -> str:
    """The message as an Event may carry it."""
    return message[:MAX_EVENT_MESSAGE]


def pod_event(
    pod: Mapping[str, Any], kind: EventType, reason: str, message: str, *, now: str
) -> dict[str, Any]:
    """A core/v1 Event about ``pod`` (``now``: RFC 3339)."""
    name, namespace = name_of(pod), namespace_of(pod)
    return {
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": name,
            "namespace": namespace,
            "uid": uid_of(pod) or None,
        },
        "reason": reason,
        "message": cut(message),
        "type": kind.value,
        "source": {"component": COMPONENT},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": COMPONENT,
    }


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
