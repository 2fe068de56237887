"""core/v1 Events: the one builder every gpudra component sends its Events through (pure).

The message is cut to ``MAX_EVENT_MESSAGE`` characters (the API server refuses a longer Event
message), so a long explanation never costs the report.  A Node is named as the kubelet names
it (uid = the node's name, namespace ``default``), so ``kubectl describe node`` lists the
Event with the kubelet's own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_EVENT_MESSAGE = 1024


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


def rfc3339(t: float) -> str:
    """A Unix time as an Event's timestamps spell it (seconds, UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cut(message: str) -> str:
    """The message as an Event may carry it."""
    return message[:MAX_EVENT_MESSAGE]


def event(
    involved: Mapping[str, Any],
    kind: EventType,
    reason: str,
    message: str,
    *,
    now: str,
    component: str,
    host: str = "",
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (an ``involvedObject`` reference; ``now``: RFC 3339),
    in the object's namespace (``default`` for a cluster-scoped one)."""
    namespace = str(involved.get("namespace") or "default")
    source: dict[str, str] = {"component": component}
    if host:
        source["host"] = host
    return {
        "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
        "involvedObject": dict(involved),
        "reason": reason,
        "message": cut(message),
        "type": kind.value,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        **({"reportingInstance": host} if host else {}),
    }


def node_ref(node_name: str) -> dict[str, Any]:
    """The ``involvedObject`` of a Node, as the kubelet writes it."""
    return {"kind": "Node", "apiVersion": "v1", "name": node_name, "uid": node_name}
