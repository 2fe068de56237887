"""Whether a toleration tolerates a taint: one rule for device taints and node taints (pure).

DRA ``DeviceTaint``/``DeviceToleration`` (the allocator, ``allocation.search``) and core/v1
``Taint``/``Toleration`` (the controller's node fit, ``controller.fit``) match the same way:
a toleration with an effect only tolerates taints of that effect (empty: every effect);
``Exists`` tolerates every value of its key (an empty key: every taint); ``Equal`` (the
default) needs the key and the value to be equal.  Only ``NoSchedule`` and ``NoExecute``
taints keep a pod or claim away; ``PreferNoSchedule`` (nodes) is a preference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gpudra.api.taints import TolerationBody

BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})

TaintT = TypeVar("TaintT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str  # Exists | Equal (any other value is matched as Equal)
    value: str
    effect: str  # empty: every effect

    @staticmethod
    def from_wire(raw: Mapping[str, Any]) -> Toleration:
        """A toleration as the API spells it (absent fields: the API's defaults)."""
        return Toleration(
            raw.get("key") or "",
            raw.get("operator") or "Equal",
            raw.get("value") or "",
            raw.get("effect") or "",
        )

    def to_wire(self) -> TolerationBody:
        out: TolerationBody = {}
        if self.key:
            out["key"] = self.key
        if self.operator:
            out["operator"] = self.operator
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        return out

    def tolerates(self, taint: Mapping[str, Any]) -> bool:
        if self.effect and self.effect != taint.get("effect"):
            return False
        if self.operator == "Exists":
            return not self.key or self.key == (taint.get("key") or "")
        return self.key == (taint.get("key") or "") and self.value == (taint.get("value") or "")


def untolerated(taints: Iterable[TaintT], tolerations: Sequence[Toleration]) -> TaintT | None:
    """The first taint that keeps a pod or claim with ``tolerations`` away (None: none)."""
    for taint in taints:
        if taint.get("effect") in BLOCKING_EFFECTS and not any(
            t.tolerates(taint) for t in tolerations
        ):
            return taint
    return None
