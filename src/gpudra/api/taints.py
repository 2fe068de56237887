"""Taints and tolerations as the API spells them, for nodes (core/v1) and devices (DRA).

``core/v1`` ``Taint``/``Toleration`` and ``resource.k8s.io`` ``DeviceTaint``/
``DeviceToleration`` have the same fields gpudra reads and the same matching rules
(``kubetypes.tolerations``), so one pair of types serves both.  ``TolerationBody`` is the
wire form; ``kubetypes.tolerations.Toleration`` is the parsed value that matches taints.
"""

from __future__ import annotations

from typing import TypedDict


class Taint(TypedDict, total=False):
    key: str
    value: str
    # nodes: NoSchedule | NoExecute | PreferNoSchedule; devices: NoSchedule | NoExecute | None
    effect: str
    timeAdded: str  # devices: RFC 3339, when the taint was added


class TolerationBody(TypedDict, total=False):
    key: str
    operator: str  # Equal (the default) | Exists
    value: str
    effect: str  # empty: every effect
    tolerationSeconds: int
