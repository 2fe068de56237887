"""The device configuration an allocation carries (pure), as kube-scheduler writes it.

``status.allocation.devices.config`` is what the node's driver reads at prepare: first the
config entries of each DeviceClass the allocated requests use (once per class, in the
claim's request order; for ``firstAvailable`` the chosen subrequest's class), with ``source:
FromClass`` and ``requests`` naming the requests that use the class; then the claim's own
config entries, in order, with ``source: FromClaim`` and their own ``requests``.  Observed
on kube-scheduler: 1.37 omits a class entry's ``requests`` when the class serves every
request of the claim (empty means all), 1.34 always lists them (``omit_all``); an
integration test compares the two allocations on each version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpudra.api.claim import DeviceRequestAllocationResult, claim_devices
from gpudra.api.deviceclass import class_config
from gpudra.resourceapi import base_request, subrequest


def _class_of(spec_requests: list[dict[str, Any]], name: str) -> str | None:
    main, sub = base_request(name), subrequest(name)
    for r in spec_requests:
        if r.get("name") != main:
            continue
        if not sub:
            return (r.get("exactly") or {}).get("deviceClassName") or r.get("deviceClassName")
        for s in r.get("firstAvailable") or []:
            if s.get("name") == sub:
                return str(s.get("deviceClassName") or "") or None
    return None


def allocation_config(
    claim: Mapping[str, Any],
    classes: Mapping[str, Mapping[str, Any]],
    results: list[DeviceRequestAllocationResult],
    *,
    omit_all: bool = True,
) -> list[dict[str, Any]]:
    devices = claim_devices(claim)
    spec_requests = devices.get("requests") or []
    order = {r.get("name"): i for i, r in enumerate(spec_requests)}
    names: list[str] = []
    for r in results:
        if r["request"] not in names:
            names.append(r["request"])
    names.sort(key=lambda n: order.get(base_request(n), len(order)))
    by_class: dict[str, list[str]] = {}
    for name in names:
        by_class.setdefault(_class_of(spec_requests, name) or "", []).append(name)
    out: list[dict[str, Any]] = []
    for cls_name, served in by_class.items():
        everything = len(served) == len(spec_requests)
        for entry in class_config(classes.get(cls_name) or {}):
            item: dict[str, Any] = {"source": "FromClass"}
            if not (omit_all and everything):
                item["requests"] = list(served)
            out.append(item | _body(entry))
    for entry in devices.get("config") or []:
        mine: dict[str, Any] = {"source": "FromClaim", **_body(entry)}
        if entry.get("requests"):
            mine["requests"] = list(entry["requests"])
        out.append(mine)
    return out


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    """The configuration itself (``opaque`` today), without the entry's ``requests``."""
    return {k: v for k, v in entry.items() if k != "requests"}
