"""``ResourceClaim``: what a claim asks for (``spec.devices``) and what it got
(``status.allocation``), plus who uses it (``status.reservedFor``).

Used by the allocator and the controller (which write allocations) and by the node plugin
(which prepares what ``status.allocation.devices.results`` names, for ``metadata.uid``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from gpudra.api.meta import Object, ObjectMeta, uid_of
from gpudra.api.taints import TolerationBody


class DeviceRequestAllocationResult(TypedDict, total=False):
    request: str  # ``main`` or ``main/sub`` (firstAvailable)
    driver: str
    pool: str
    device: str
    adminAccess: bool
    tolerations: list[TolerationBody]
    shareID: str  # consumable capacity: this allocation is one share of the device
    consumedCapacity: dict[str, str]  # what the share takes of each capacity (quantities)


class DeviceAllocationResult(TypedDict, total=False):
    results: list[DeviceRequestAllocationResult]
    config: list[dict[str, Any]]


class AllocationResult(TypedDict, total=False):
    devices: DeviceAllocationResult
    nodeSelector: dict[str, Any]
    allocationTimestamp: str


class ResourceClaimStatus(TypedDict, total=False):
    allocation: AllocationResult
    reservedFor: list[dict[str, Any]]


class DeviceClaim(TypedDict, total=False):
    requests: list[dict[str, Any]]  # each ``exactly`` or ``firstAvailable`` (inputs.parse_claim)
    constraints: list[dict[str, Any]]
    config: list[dict[str, Any]]


class ResourceClaimSpec(TypedDict, total=False):
    devices: DeviceClaim


class ResourceClaim(TypedDict, total=False):
    metadata: ObjectMeta
    spec: ResourceClaimSpec
    status: ResourceClaimStatus


def claim_uid(claim: Object) -> str:
    return uid_of(claim)


def claim_devices(claim: Object) -> DeviceClaim:
    """``spec.devices``: requests, constraints and config."""
    spec: ResourceClaimSpec = claim.get("spec") or {}
    return spec.get("devices") or {}


def claim_status(claim: Object) -> ResourceClaimStatus:
    status: ResourceClaimStatus = claim.get("status") or {}
    return status


def claim_allocation(claim: Object) -> AllocationResult | None:
    """``status.allocation``; None while the claim is not allocated."""
    return claim_status(claim).get("allocation") or None


def claim_is_allocated(claim: Object) -> bool:
    return claim_allocation(claim) is not None


def claim_reserved_for(claim: Object) -> list[dict[str, Any]]:
    """``status.reservedFor``: the consumers (pods) the scheduler reserved the claim for."""
    return claim_status(claim).get("reservedFor") or []


def allocation_results(allocation: AllocationResult | None) -> list[DeviceRequestAllocationResult]:
    """``devices.results`` of an allocation (empty for None)."""
    return ((allocation or {}).get("devices") or {}).get("results") or []


def claim_results(claim: Object) -> list[DeviceRequestAllocationResult]:
    """``status.allocation.devices.results``: one entry per allocated device."""
    return allocation_results(claim_allocation(claim))


def claim_node_selector(claim: Object) -> dict[str, Any] | None:
    """``status.allocation.nodeSelector``: where the allocated devices are reachable."""
    return (claim_allocation(claim) or {}).get("nodeSelector") or None
