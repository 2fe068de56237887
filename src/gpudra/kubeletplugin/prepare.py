"""Decide what preparing one claim means on this node (pure: data in, data out).

Preparing is planned once, in three pure steps around the side effects:

1. ``resolve_claim``: the ResourceClaim as the API server returned it, resolved in the
   node catalogue (the same one the slices are published from), gives the devices to
   prepare (CDI ids, base request names, footprints, dynamic-MIG placements), or
   ``PrepareError`` saying exactly what is wrong with the claim;
2. ``mig_ownership.claim_placements``: each dynamic-MIG placement marked as gpudra's to
   create (or refused: someone else's instance is there);
3. ``finish``: given the instances created, the prepared record and its CDI spec.

What the claim's configs ask of its devices (TimeSlicing, MPS, shares of a GPU) is decided in
``sharing`` (see its docstring): step 1 records each device's time slice and share and the
claim's MPS daemon plan (``sharing.mps_plan``).  What a refusal is: ``prepare_errors``.

The exclusivity guard (a device prepared for another claim is refused unless both may share)
is ``exclusivity``.  Every refusal says what went wrong as an ``ErrorType``, decided where it
is raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gpudra.api.claim import (
    AllocationResult,
    DeviceRequestAllocationResult,
    allocation_results,
    claim_allocation,
    claim_uid,
)
from gpudra.catalogue.catalogue import CatalogueDevice, DeviceKind, NodeCatalogue
from gpudra.cdi.spec import DEVICES_ANNOTATION, CdiDevice, claim_spec, device_id
from gpudra.devices.gpu import MigDevice
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.sharing.claim_config import (
    ClaimConfigError,
    ConfigEntry,
    allocation_configs,
    device_sharing,
)
from gpudra.kubeletplugin.sharing.mps_plan import cdi_mps, mps_plan, with_mps_uuids
from gpudra.kubeletplugin.sharing.share_plan import ShareError, check_one_gpu, device_share
from gpudra.kubetypes.nodeselect import pinned_node_names
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice
from gpudra.resourceapi import base_request


def device_records(devices: Iterable[PreparedDevice]) -> str:
    """The spec's copy of a claim's checkpoint devices: what recovery needs when the
    checkpoint is lost (footprints for the exclusivity guard, MIG identity and ownership
    for unprepare)."""
    return json.dumps([d.model_dump(mode="json", by_alias=True) for d in devices])


# Kubernetes UIDs are UUIDs; anything a file name can safely carry is accepted, nothing that
# could leave the CDI or checkpoint directory ("/", "..", NUL, spaces)
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_uid(uid: str) -> None:
    """Refuse a claim UID that cannot be a Kubernetes UID before any file path is built
    from it."""
    if not _UID.match(uid) or ".." in uid:
        raise PrepareError(
            f"invalid claim UID {uid!r}: expected a Kubernetes UID (letters, digits, '-', '_', "
            "'.'; at most 128 characters; no '..')",
            ErrorType.INVALID_REQUEST,
        )


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.uid})"


@dataclass(frozen=True)
class PrepareResult:
    """A prepared claim as it is recorded, and the CDI spec that goes with it."""

    claim: PreparedClaim
    cdi_spec: dict[str, Any]


def _some(names: list[str], most: int = 12) -> str:
    """At most ``most`` names, and how many there are (a dynamic-MIG node has hundreds)."""
    if len(names) <= most:
        return ", ".join(names) or "none"
    return f"{', '.join(names[:most])}, ... ({len(names)} devices)"


def resolve_claim(
    claim: Mapping[str, Any],
    ref: ClaimRef,
    *,
    driver: str,
    node_name: str,
    catalogue: NodeCatalogue,
    mps_root: str | None = None,
) -> PreparedClaim:
    """The claim's devices on this node, each resolved in the catalogue (a dynamic-MIG
    placement without its instance yet), and its MPS daemon's plan (its dirs under
    ``mps_root``; None: MPS is refused), or PrepareError saying what is wrong.

    The steps, each refusing with its own ``ErrorType``: the claim is the one the kubelet
    asked for, allocated to this node, with devices of our driver; our configs parse; each
    device is in this node's pool and catalogue, healthy, and its config and share are
    valid; the shares fit one GPU; the claim's MPS daemon can be planned."""
    _check_same_claim(claim, ref)
    allocation = _allocation_here(claim, ref, node_name)
    results = _our_results(allocation, ref, driver)
    configs = _our_configs(allocation, ref, driver)
    devices: list[PreparedDevice] = []
    mps: dict[str, ConfigEntry | None] = {}
    for r in results:
        name = r.get("device", "")
        dev = _catalogue_device(r, ref, node_name, catalogue)
        time_slice, mps_entry = _device_sharing(configs, r, dev, ref)
        if any(d.device == name for d in devices):
            continue  # one device serving several requests is prepared once
        mps[name] = mps_entry
        devices.append(_prepared_device(r, dev, results, ref, time_slice))
    _check_one_gpu(devices, ref)
    return PreparedClaim(
        uid=ref.uid,
        namespace=ref.namespace,
        name=ref.name,
        state="preparing",
        devices=tuple(devices),
        mps=mps_plan(
            mps, devices, claim=str(ref), uid=ref.uid, mps_root=mps_root, catalogue=catalogue
        ),
    )


def _check_same_claim(claim: Mapping[str, Any], ref: ClaimRef) -> None:
    """The claim read is the one the kubelet asked for (not one recreated under its name)."""
    uid = claim_uid(claim)
    if uid != ref.uid:
        raise PrepareError(
            f"claim {ref.namespace}/{ref.name} has UID {uid or None}, the kubelet asked for "
            f"{ref.uid}: the claim was deleted and recreated",
            ErrorType.CLAIM_NOT_FOUND,
        )


def _allocation_here(claim: Mapping[str, Any], ref: ClaimRef, node_name: str) -> AllocationResult:
    """The claim's allocation, when it is allocated and not pinned to other nodes."""
    allocation = claim_allocation(claim)
    if not allocation:
        raise PrepareError(f"claim {ref} is not allocated", ErrorType.NOT_ALLOCATED)
    nodes = pinned_node_names(allocation.get("nodeSelector"))
    if nodes is not None and node_name not in nodes:
        raise PrepareError(
            f"claim {ref} is allocated for node {', '.join(sorted(nodes))}, not this node "
            f"({node_name})",
            ErrorType.NOT_ALLOCATED,
        )
    return allocation


def _our_results(
    allocation: AllocationResult, ref: ClaimRef, driver: str
) -> list[DeviceRequestAllocationResult]:
    """The allocation's results of ``driver``; at least one."""
    allocated = allocation_results(allocation)
    results = [r for r in allocated if r.get("driver") == driver]
    if not results:
        drivers = sorted({r.get("driver", "?") for r in allocated})
        raise PrepareError(
            f"claim {ref} has no devices of driver {driver} (allocated drivers: "
            f"{', '.join(drivers) or 'none'})",
            ErrorType.NOT_ALLOCATED,
        )
    return results


def _our_configs(allocation: AllocationResult, ref: ClaimRef, driver: str) -> list[ConfigEntry]:
    """The allocation's configs of ``driver``, every one parsed."""
    try:
        return allocation_configs((allocation.get("devices") or {}).get("config") or [], driver)
    except ClaimConfigError as e:
        raise PrepareError(f"claim {ref}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e


def _catalogue_device(
    r: DeviceRequestAllocationResult, ref: ClaimRef, node_name: str, catalogue: NodeCatalogue
) -> CatalogueDevice:
    """A result's device in the node catalogue: in this node's pool, known, healthy."""
    pool, name = r.get("pool", ""), r.get("device", "")
    if pool != node_name:
        raise PrepareError(
            f"claim {ref}: device {pool}/{name} is in pool {pool!r}, not this node's "
            f"pool {node_name!r}",
            ErrorType.NOT_ALLOCATED,
        )
    dev = catalogue.device(name)
    if dev is None:
        raise PrepareError(
            f"claim {ref}: unknown device {name!r} on node {node_name} "
            f"(known: {_some(sorted(catalogue.devices))})",
            ErrorType.UNKNOWN_DEVICE,
        )
    if not dev.healthy:
        raise PrepareError(
            f"claim {ref}: device {name} ({dev.uuid}) is not healthy",
            ErrorType.DEVICE_UNHEALTHY,
        )
    return dev


def _device_sharing(
    configs: list[ConfigEntry],
    r: DeviceRequestAllocationResult,
    dev: CatalogueDevice,
    ref: ClaimRef,
) -> tuple[str, ConfigEntry | None]:
    """What the result's config asks of its device (``claim_config.device_sharing``)."""
    try:
        return device_sharing(configs, r.get("request", ""), mig=dev.kind is not DeviceKind.GPU)
    except ClaimConfigError as e:
        raise PrepareError(f"claim {ref}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e


def _prepared_device(
    r: DeviceRequestAllocationResult,
    dev: CatalogueDevice,
    results: list[DeviceRequestAllocationResult],
    ref: ClaimRef,
    time_slice: str,
) -> PreparedDevice:
    """The device of result ``r`` as it is recorded, for every request it serves (``results``:
    all of the claim's results of our driver), its share added up."""
    pool, name = r.get("pool", ""), r.get("device", "")
    requests = sorted(
        {
            base_request(x.get("request", ""))
            for x in results
            if x.get("device") == name and x.get("pool") == pool
        }
    )
    placement = dev.mig if dev.kind is DeviceKind.MIG_PLACEMENT else None
    try:
        share = device_share([x for x in results if x.get("device") == name])
    except ShareError as e:
        raise PrepareError(f"claim {ref}: {e}", ErrorType.INVALID_REQUEST) from e
    return PreparedDevice(
        request_names=tuple(requests),
        pool=pool,
        device=name,
        cdi_device_ids=(device_id(ref.uid, name),),
        uuid=dev.uuid,
        admin_access=bool(r.get("adminAccess")),
        shareable=share is not None,
        share_id=share.share_id if share else "",
        share_memory_mib=share.memory_mib if share else 0,
        share_multiprocessors=share.multiprocessors if share else 0,
        footprint=dev.footprint,
        mig_parent=placement.parent_uuid if placement else "",
        mig_profile=placement.profile if placement else "",
        mig_start=placement.start if placement else -1,
        time_slice=time_slice,
    )


def _check_one_gpu(devices: list[PreparedDevice], ref: ClaimRef) -> None:
    """A claim holding shares holds shares of one GPU, and nothing else (``share_plan``)."""
    try:
        check_one_gpu(devices)
    except ShareError as e:
        raise PrepareError(f"claim {ref}: {e}", ErrorType.UNSUPPORTED_CONFIG) from e


def finish(
    claim: PreparedClaim,
    created: dict[str, MigDevice],
    *,
    catalogue: NodeCatalogue,
    dev_root: str | None,
) -> PrepareResult:
    """The one step after the side effects: the claim with the MIG instances created for it
    (UUIDs, and in real mode their capability device nodes), prepared, and its CDI spec."""
    devices = tuple(
        d.model_copy(update={"uuid": created[d.device].uuid}) if d.device in created else d
        for d in claim.devices
    )
    done = with_mps_uuids(claim.model_copy(update={"devices": devices, "state": "prepared"}))
    cdi = [
        CdiDevice(
            name=d.device,
            uuid=d.uuid,
            device_nodes=_device_nodes(catalogue, d.device)
            + (created[d.device].capability_nodes if d.device in created else ()),
        )
        for d in devices
    ]
    spec = claim_spec(
        claim_uid=claim.uid,
        namespace=claim.namespace,
        name=claim.name,
        devices=cdi,
        dev_root=dev_root,
        annotations={DEVICES_ANNOTATION: device_records(devices)},
        mps=cdi_mps(done.mps),
    )
    return PrepareResult(claim=done, cdi_spec=spec)


def _device_nodes(catalogue: NodeCatalogue, name: str) -> tuple[str, ...]:
    dev = catalogue.device(name)
    if dev is None:  # the node changed between resolving the claim and finishing it
        raise PrepareError(f"device {name} is no longer on this node", ErrorType.UNKNOWN_DEVICE)
    return dev.device_nodes
