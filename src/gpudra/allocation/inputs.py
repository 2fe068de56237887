"""The allocator's view of the cluster, parsed from API JSON: pools, devices, classes, claims.

Parsing validates what the API server would (counts, limits, names) and raises
``InputError`` with the object, the field and what is allowed, so the explain tool and the
controller can report bad claims instead of crashing.  Slices are grouped into pools by
``allocation.pools``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from gpudra.allocation.capacity import Capacity, parse_capacities
from gpudra.api.claim import claim_devices
from gpudra.api.deviceclass import selector_expressions
from gpudra.api.meta import name_of, namespace_of, uid_of
from gpudra.api.slice import SliceDevice
from gpudra.api.taints import Taint
from gpudra.catalogue.attributes import TOPOLOGY
from gpudra.common.errors import GpudraError
from gpudra.kubetypes.quantity import Quantity, QuantityError, parse_quantity
from gpudra.kubetypes.tolerations import Toleration
from gpudra.resourceapi import (
    MAX_REQUESTS_PER_CLAIM,
    MAX_RESULTS_PER_ALLOCATION,
    base_request,
    request_name,
)

MAX_SUBREQUESTS = 8
MAX_SELECTORS = 32
MAX_TOLERATIONS = 16


class InputError(GpudraError, ValueError):
    """A claim, class or slice the allocator cannot use; the message says where and why."""


DeviceKey = tuple[str, str, str]  # driver, pool, device


@dataclass(frozen=True, eq=False)
class Device:
    driver: str
    pool: str
    name: str
    raw: SliceDevice  # the device as its slice lists it
    node: str | None  # per-device node (perDeviceNodeSelection); else the slice's
    attrs: dict[str, tuple[str, Any]]  # fully qualified name -> (type, value)
    consumes: tuple[tuple[str, dict[str, Quantity]], ...]
    taints: tuple[Taint, ...]
    multi: bool = False  # allowMultipleAllocations: several claims may share it

    @property
    def key(self) -> DeviceKey:
        return (self.driver, self.pool, self.name)

    @cached_property
    def capacity(self) -> Mapping[str, Capacity]:
        """Its capacities, parsed when first needed (a view of 1,000 nodes parses 16,000
        quantities otherwise, and most claims ask for no capacity)."""
        return parse_capacities(self.raw.get("capacity"))

    @cached_property
    def attr_signature(self) -> tuple[object, ...]:
        """What scoring reads from the device: topology attributes (not its identity)."""
        return tuple(self.attrs.get(f"{self.driver}/{k}") for k in TOPOLOGY)

    @cached_property
    def content(self) -> bytes:
        """Everything the slice says about the device, canonical (remembered verdicts key
        on it: equal content, equal device)."""
        body = {"driver": self.driver, "pool": self.pool, "node": self.node, "raw": self.raw}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()

    def attr(self, qualified: str) -> tuple[str, Any] | None:
        return self.attrs.get(qualified)


@dataclass
class Pool:
    driver: str
    name: str
    generation: int
    expected_slices: int
    slices: int = 0
    node_name: str | None = None
    all_nodes: bool = False
    node_selector: dict[str, Any] | None = None
    devices: list[Device] = field(default_factory=list)
    counters: dict[str, dict[str, Quantity]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.slices >= self.expected_slices


def qualify(driver: str, name: str) -> str:
    return name if "/" in name else f"{driver}/{name}"


@dataclass(frozen=True)
class Request:
    """One exact request or one firstAvailable subrequest (``name`` is ``main/sub``)."""

    name: str
    device_class: str
    selectors: tuple[str, ...]
    all_devices: bool
    count: int
    admin_access: bool
    tolerations: tuple[Toleration, ...]
    capacity: tuple[tuple[str, Quantity], ...] = ()  # capacity.requests, sorted by name

    @property
    def base(self) -> str:
        return base_request(self.name)

    @property
    def capacity_requests(self) -> dict[str, Quantity]:
        return dict(self.capacity)


@dataclass(frozen=True)
class ClaimRequest:
    name: str
    alternatives: tuple[Request, ...]  # one for `exactly`, several for firstAvailable


@dataclass(frozen=True)
class Constraint:
    requests: tuple[str, ...]  # empty: all requests of the claim
    match_attribute: str | None
    distinct_attribute: str | None

    def applies_to(self, request: str) -> bool:
        return not self.requests or base_request(request) in self.requests


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str
    requests: tuple[ClaimRequest, ...]
    constraints: tuple[Constraint, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _tolerations(where: str, raw: list[dict[str, Any]]) -> tuple[Toleration, ...]:
    if len(raw) > MAX_TOLERATIONS:
        raise InputError(f"{where}: {len(raw)} tolerations; at most {MAX_TOLERATIONS} allowed")
    return tuple(Toleration.from_wire(t) for t in raw)


def _capacity(where: str, raw: Mapping[str, Any]) -> tuple[tuple[str, Quantity], ...]:
    out = []
    for name, value in sorted((raw.get("requests") or {}).items()):
        try:
            q = parse_quantity(str(value))
        except QuantityError as e:
            raise InputError(f"{where}: capacity.requests[{name}]: {e}") from e
        if q.sign < 0:
            raise InputError(f"{where}: capacity.requests[{name}] is negative ({value})")
        out.append((str(name), q))
    return tuple(out)


def _request(where: str, name: str, body: dict[str, Any], admin_ok: bool) -> Request:
    cls = body.get("deviceClassName")
    if not cls:
        raise InputError(f"{where}: deviceClassName is required")
    mode = body.get("allocationMode", "ExactCount")
    if mode not in ("ExactCount", "All"):
        raise InputError(f"{where}: allocationMode {mode!r}; allowed: ExactCount, All")
    count = int(body.get("count", 1 if mode == "ExactCount" else 0))
    if mode == "ExactCount" and not 1 <= count <= MAX_RESULTS_PER_ALLOCATION:
        raise InputError(
            f"{where}: count {count}; allowed: 1..{MAX_RESULTS_PER_ALLOCATION} (API limit "
            "on devices per claim)"
        )
    if mode == "All" and count:
        raise InputError(f"{where}: count must be unset with allocationMode All")
    selectors = selector_expressions(body.get("selectors") or [])
    if len(selectors) > MAX_SELECTORS:
        raise InputError(f"{where}: {len(selectors)} selectors; at most {MAX_SELECTORS} allowed")
    admin = bool(body.get("adminAccess")) and admin_ok
    return Request(
        capacity=_capacity(where, body.get("capacity") or {}),
        name=name,
        device_class=cls,
        selectors=tuple(selectors),
        all_devices=mode == "All",
        count=count,
        admin_access=admin,
        tolerations=_tolerations(where, body.get("tolerations") or []),
    )


def parse_claim(obj: Mapping[str, Any]) -> Claim:
    """A ResourceClaim (or a template's inner spec wrapped as a claim) for the allocator."""
    ref = f"claim {namespace_of(obj)}/{name_of(obj) or '?'}"
    devices = claim_devices(obj)
    raw_requests = devices.get("requests") or []
    if not raw_requests:
        raise InputError(f"{ref}: spec.devices.requests is empty")
    if len(raw_requests) > MAX_REQUESTS_PER_CLAIM:
        raise InputError(
            f"{ref}: {len(raw_requests)} requests; at most {MAX_REQUESTS_PER_CLAIM} allowed"
        )
    requests = []
    for i, r in enumerate(raw_requests):
        name = r.get("name") or ""
        where = f"{ref}: spec.devices.requests[{i}] ({name or 'unnamed'})"
        if not name:
            raise InputError(f"{where}: name is required")
        if ("exactly" in r) == ("firstAvailable" in r):
            raise InputError(f"{where}: set exactly one of exactly or firstAvailable")
        alts: tuple[Request, ...]
        if "exactly" in r:
            alts = (_request(where, name, r["exactly"], admin_ok=True),)
        else:
            subs = r["firstAvailable"]
            if not 1 <= len(subs) <= MAX_SUBREQUESTS:
                raise InputError(f"{where}: firstAvailable has {len(subs)} entries; allowed 1..8")
            alts = tuple(
                _request(
                    f"{where}.firstAvailable[{j}]", request_name(name, s.get("name", j)), s, False
                )
                for j, s in enumerate(subs)
            )
        requests.append(ClaimRequest(name=name, alternatives=alts))
    names = {r.name for r in requests}
    constraints = []
    for i, c in enumerate(devices.get("constraints") or []):
        listed = tuple(c.get("requests") or ())
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise InputError(
                f"{ref}: spec.devices.constraints[{i}] names unknown request(s) {unknown}; "
                f"requests are {sorted(names)}"
            )
        constraints.append(Constraint(listed, c.get("matchAttribute"), c.get("distinctAttribute")))
    return Claim(
        namespace=namespace_of(obj),
        name=name_of(obj),
        uid=uid_of(obj),
        requests=tuple(requests),
        constraints=tuple(constraints),
    )
