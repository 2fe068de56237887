"""Plan how to turn the slices that exist into the ones we want (pure).

Content is compared through a hash of the desired devices kept in an annotation, because
the API server canonicalises quantities and defaults fields: comparing specs field by field
would see a change on every pass.  Any change bumps the pool generation once, so consumers
never mix devices of two generations.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

HASH_ANNOTATION = "gpudra.io/devices-hash"


def devices_hash(spec: dict[str, Any]) -> str:
    body = {k: spec.get(k) for k in ("devices", "sharedCounters", "nodeName", "driver")}
    body["count"] = spec["pool"]["resourceSliceCount"]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class SliceChanges:
    """The creates, updates and deletes that publish a pool at ``generation``."""

    generation: int
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _generation(obj: dict[str, Any]) -> int:
    return int(obj.get("spec", {}).get("pool", {}).get("generation", 0))


def plan(existing: list[dict[str, Any]], desired: list[dict[str, Any]]) -> SliceChanges:
    """Actions that make ``existing`` equal ``desired`` (built at any generation).

    The slices to write are copies of ``desired`` with their final generation, hash
    annotation and resourceVersion precondition; neither input is changed."""
    current = max((_generation(s) for s in existing), default=0)
    by_name = {s["metadata"]["name"]: s for s in existing}
    hashes = {s["metadata"]["name"]: devices_hash(s["spec"]) for s in desired}
    unchanged = (
        set(by_name) == set(hashes)
        and len({_generation(s) for s in existing}) == 1
        and all(
            (by_name[n]["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) == h
            for n, h in hashes.items()
        )
    )
    if unchanged:
        return SliceChanges(generation=current)
    generation = current + 1
    out = SliceChanges(generation=generation)
    for want in desired:
        s = copy.deepcopy(want)
        name = s["metadata"]["name"]
        s["spec"]["pool"]["generation"] = generation
        s["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = hashes[name]
        if name in by_name:
            s["metadata"]["resourceVersion"] = by_name[name]["metadata"].get("resourceVersion")
            out.update.append(s)
        else:
            out.create.append(s)
    out.delete = [s for n, s in by_name.items() if n not in hashes]
    return out
