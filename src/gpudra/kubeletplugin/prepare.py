"""Decide what preparing one claim means on this node (pure: data in, data out).

Preparing is planned once, in three pure steps around the side effects:

1. ``resolve_claim``: the ResourceClaim as the API server returned it, resolved in the
   node catalogue (the same one the slices are published from), gives the devices to
   prepare (CDI ids, base request names, footprints, dynamic-MIG placements), or
   ``PrepareError`` saying exactly what is wrong with the claim;
2. ``claim_placements``: each dynamic-MIG placement marked as gpudra's to create (or
   refused: someone else's instance is there);
3. ``finish``: given the instances created, the prepared record and its CDI spec.

A claim whose devices' config asks for MPS gets an ``MpsPlan`` in step 1 (one daemon for the
claim: its UUIDs, dirs, defaults; per-device limits normalized as NVIDIA's driver does).  A
claim holding a share of a GPU (consumable capacity, ``share_plan``) gets the GPU's shared
daemon instead, its share as its clients' limits, when MPS is enabled (without MPS the share
is prepared unenforced).

Also the exclusivity guard: a device prepared for another claim is refused unless both may
share.  Every refusal says what went wrong as an ``ErrorType``, decided where it is raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gpudra.allocation.nodeselect import pinned_node_names
from gpudra.api.claim import allocation_results, claim_allocation, claim_uid
from gpudra.catalogue.catalogue import DeviceKind, NodeCatalogue
from gpudra.cdi.spec import DEVICES_ANNOTATION, CdiDevice, CdiMps, claim_spec, device_id
from gpudra.devices.gpu import MigDevice
from gpudra.devices.timeslice import Interval
from gpudra.kubeletplugin.checkpoint import MpsPlan, PreparedClaim, PreparedDevice
from gpudra.kubeletplugin.claim_config import (
    ConfigEntry,
    ConfigError,
    GpuSharing,
    Strategy,
    allocation_configs,
    config_for,
    pinned_limits,
)
from gpudra.kubeletplugin.share_plan import (
    ShareError,
    check_one_gpu,
    device_share,
    mps_config,
    shared_plan,
)
from gpudra.resourceapi import base_request


def device_records(devices: Iterable[PreparedDevice]) -> str:
    """The spec's copy of a claim's checkpoint devices: what recovery needs when the
    checkpoint is lost (footprints for the exclusivity guard, MIG identity and ownership
    for unprepare)."""
    return json.dumps([d.model_dump(mode="json", by_alias=True) for d in devices])


class ErrorType(StrEnum):
    """What went wrong with one claim: a small fixed set (the values are the node metrics'
    ``error_type`` labels, ``gpudra.metrics.node.PREPARE_ERROR_TYPES``)."""

    INVALID_REQUEST = "invalid_request"  # a claim UID that is no Kubernetes UID
    CLAIM_NOT_FOUND = "claim_not_found"  # the claim is gone, or recreated under another UID
    NOT_ALLOCATED = "not_allocated"  # not allocated, or not to this node, driver or pool
    API_ERROR = "api_error"  # the API server failed or timed out reading the claim
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the call's deadline passed, or it was cancelled
    UNKNOWN_DEVICE = "unknown_device"  # a device not (or no longer) in the node catalogue
    DEVICE_UNHEALTHY = "device_unhealthy"  # its GPU has a fatal fault or is lost
    INVALID_CONFIG = "invalid_config"  # an opaque config of ours that is malformed
    UNSUPPORTED_CONFIG = "unsupported_config"  # a valid config gpudra cannot honour (yet)
    # prepared for another claim (and not both may share), or its MIG placement is taken by
    # an instance gpudra did not create
    DEVICE_BUSY = "device_busy"
    MIG_ERROR = "mig_error"  # creating or destroying a MIG instance failed
    MPS_ERROR = "mps_error"  # starting or stopping the claim's MPS daemon failed
    NVML_ERROR = "nvml_error"  # NVML failed reading the GPUs
    CDI_ERROR = "cdi_error"  # the claim's CDI spec could not be written or removed
    CHECKPOINT_ERROR = "checkpoint_error"  # the checkpoint could not be written
    INTERNAL = "internal"  # an unexpected error (a bug)


class PrepareError(Exception):
    """This claim cannot be prepared here; the message is reported to the kubelet, ``kind``
    says what went wrong."""

    def __init__(self, message: str, kind: ErrorType) -> None:
        super().__init__(message)
        self.kind = kind


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


def _sharing(
    configs: list[ConfigEntry], request: str, mig: bool, ref: ClaimRef
) -> tuple[str, ConfigEntry | None]:
    """The device's config, as what prepare must do: the interval a TimeSlicing config sets
    on a whole GPU ("" for none: no config, no sharing, or a MIG device, which the driver
    time-slices anyway), and the config entry when it asks for MPS."""
    try:
        entry = config_for(configs, request, mig=mig)
    except ConfigError as e:
        raise PrepareError(f"claim {ref}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e
    sharing = entry.config.sharing if entry is not None else None
    if entry is None or sharing is None:
        return "", None
    if sharing.strategy is Strategy.MPS:
        return "", entry
    if mig or not isinstance(sharing, GpuSharing):
        return "", None
    ts = sharing.time_slicing_config
    return (ts.interval if ts else Interval.DEFAULT).value, None


def _mps_plan(
    mps: dict[str, ConfigEntry | None],
    devices: list[PreparedDevice],
    ref: ClaimRef,
    mps_root: str | None,
    catalogue: NodeCatalogue,
) -> MpsPlan | None:
    """One MPS daemon for the whole claim, or None when no device asks for one.  Mixing MPS
    and other devices, or two MPS configs, in one claim is refused: one daemon serves all the
    claim's GPUs with one set of defaults, as in NVIDIA's driver.  A share claim (one device,
    checked before) gets its GPU's shared daemon, with or without an MPS config; without
    MPS on the node, its share is prepared unenforced (an MPS config is refused as always)."""
    entries = {e.index: e for e in mps.values() if e is not None}
    if len(entries) > 1:
        where = " and ".join(e.where for e in entries.values())
        raise PrepareError(
            f"claim {ref}: two MPS configs ({where}) apply to its devices; one claim gets one "
            "MPS daemon: use one MPS config for all its requests, or split the claim",
            ErrorType.UNSUPPORTED_CONFIG,
        )
    entry = next(iter(entries.values()), None)
    shared = any(d.share_id for d in devices)
    if entry is None and not shared:
        return None
    others = sorted(name for name, e in mps.items() if e is None)
    if entry is not None and others and not shared:
        raise PrepareError(
            f"claim {ref}: {entry.where} asks for MPS but device(s) {', '.join(others)} of the "
            "same claim are not shared with MPS; one claim's devices are all MPS or none: "
            "give every request the MPS config, or split the claim",
            ErrorType.UNSUPPORTED_CONFIG,
        )
    if mps_root is None:
        if entry is None:
            return None  # a share on a node without MPS
        raise PrepareError(
            f"claim {ref}: {entry.where}.sharing.strategy: MPS is not enabled on this node",
            ErrorType.UNSUPPORTED_CONFIG,
        )
    config, where = mps_config(entry), entry.where if entry is not None else ""
    try:
        if shared:
            dev = catalogue.device(devices[0].device)
            return shared_plan(
                devices[0],
                config,
                where,
                mps_root=mps_root,
                slice_device=dev.slice_device if dev is not None else None,
            )
        uuids = tuple("" if d.dynamic_mig else d.uuid for d in devices)
        limits = pinned_limits(config, uuids, where)
    except ConfigError as e:
        raise PrepareError(f"claim {ref}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e
    root = f"{mps_root.rstrip('/')}/{ref.uid}"
    return MpsPlan(
        uuids=uuids,
        pipe_dir=f"{root}/pipe",
        log_dir=f"{root}/log",
        active_thread_percentage=config.default_active_thread_percentage,
        pinned_limits=limits,
    )


def with_mps_uuids(claim: PreparedClaim) -> PreparedClaim:
    """The claim with its MPS plan's UUIDs taken from its devices (a dynamic-MIG device has
    its UUID only once its instance exists)."""
    if claim.mps is None:
        return claim
    plan = claim.mps.model_copy(update={"uuids": tuple(d.uuid for d in claim.devices)})
    return claim.model_copy(update={"mps": plan})


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
    ``mps_root``; None: MPS is refused), or PrepareError saying what is wrong."""
    uid = claim_uid(claim)
    if uid != ref.uid:
        raise PrepareError(
            f"claim {ref.namespace}/{ref.name} has UID {uid or None}, the kubelet asked for "
            f"{ref.uid}: the claim was deleted and recreated",
            ErrorType.CLAIM_NOT_FOUND,
        )
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
    allocated = allocation_results(allocation)
    results = [r for r in allocated if r.get("driver") == driver]
    if not results:
        drivers = sorted({r.get("driver", "?") for r in allocated})
        raise PrepareError(
            f"claim {ref} has no devices of driver {driver} (allocated drivers: "
            f"{', '.join(drivers) or 'none'})",
            ErrorType.NOT_ALLOCATED,
        )
    try:
        configs = allocation_configs((allocation.get("devices") or {}).get("config") or [], driver)
    except ConfigError as e:
        raise PrepareError(f"claim {ref}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e
    devices: list[PreparedDevice] = []
    mps: dict[str, ConfigEntry | None] = {}
    for r in results:
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
        time_slice, mps_entry = _sharing(
            configs, r.get("request", ""), dev.kind is not DeviceKind.GPU, ref
        )
        if any(d.device == name for d in devices):
            continue  # one device serving several requests is prepared once
        mps[name] = mps_entry
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
        devices.append(
            PreparedDevice(
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
        )
    try:
        check_one_gpu(devices)
    except ShareError as e:
        raise PrepareError(f"claim {ref}: {e}", ErrorType.UNSUPPORTED_CONFIG) from e
    return PreparedClaim(
        uid=ref.uid,
        namespace=ref.namespace,
        name=ref.name,
        state="preparing",
        devices=tuple(devices),
        mps=_mps_plan(mps, devices, ref, mps_root, catalogue),
    )


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
        mps=_cdi_mps(done.mps),
    )
    return PrepareResult(claim=done, cdi_spec=spec)


def _cdi_mps(plan: MpsPlan | None) -> CdiMps | None:
    """What the claim's containers are told: a shared daemon's client settings (the claim's
    share), or the claim's own daemon's default thread percentage."""
    if plan is None:
        return None
    return CdiMps(
        pipe_dir=plan.pipe_dir,
        log_dir=plan.log_dir,
        active_thread_percentage=(
            plan.client_thread_percentage if plan.shared else plan.active_thread_percentage
        ),
        pinned_limit=plan.client_pinned_limit if plan.shared else "",
    )


def _device_nodes(catalogue: NodeCatalogue, name: str) -> tuple[str, ...]:
    dev = catalogue.device(name)
    if dev is None:  # the node changed between resolving the claim and finishing it
        raise PrepareError(f"device {name} is no longer on this node", ErrorType.UNKNOWN_DEVICE)
    return dev.device_nodes


def _overlap(a: PreparedDevice, b: PreparedDevice) -> bool:
    """Same device, or physically overlapping (a MIG placement and its GPU or a neighbour)."""
    if a.pool == b.pool and a.device == b.device:
        return True
    return bool(a.footprint and b.footprint and set(a.footprint) & set(b.footprint))


def exclusivity_conflicts(plan: PreparedClaim, others: Iterable[PreparedClaim]) -> list[str]:
    """Devices of ``plan`` already prepared for another claim where not both may share.

    As upstream: an adminAccess allocation (monitoring, debugging) ignores ordinary claims to
    the device and is ignored by them; two ordinary allocations share a device only when both
    carry a ``shareID`` (consumable capacity)."""
    problems = []
    for other in others:
        if other.uid == plan.uid:
            continue
        for mine in plan.devices:
            held = next(
                (d for d in other.devices if _overlap(mine, d) and not d.admin_access), None
            )
            if mine.admin_access or held is None:
                continue
            if not (mine.shareable and held.shareable):
                problems.append(
                    f"device {mine.device} ({mine.uuid}) is already prepared for claim "
                    f"{other.namespace}/{other.name} ({other.uid}) and the two allocations do "
                    f"not both allow sharing"
                )
    return problems


def instance_at(device: PreparedDevice, existing: Iterable[MigDevice]) -> MigDevice | None:
    """The MIG instance at exactly a dynamic-MIG device's placement, whoever made it."""
    return next(
        (
            m
            for m in existing
            if m.parent_uuid == device.mig_parent
            and m.profile == device.mig_profile
            and m.placement_start == device.mig_start
        ),
        None,
    )


def own_instance(device: PreparedDevice, existing: Iterable[MigDevice]) -> MigDevice | None:
    """The instance gpudra created for a prepared device: by its recorded UUID, or (created
    but the UUID not recorded yet: a crash in between) at its placement.  Never an instance
    gpudra did not create."""
    if not device.ours:
        return None
    if device.uuid:
        return next((m for m in existing if m.uuid == device.uuid), None)
    return instance_at(device, existing)


def claim_placements(
    devices: Iterable[PreparedDevice],
    previous: PreparedClaim | None,
    existing: Iterable[MigDevice],
) -> tuple[PreparedDevice, ...]:
    """The devices of a claim about to be prepared, each dynamic-MIG placement marked as
    gpudra's to create.  An instance already at a placement is adopted only when an earlier
    attempt of this same claim had marked it ours (and, once its UUID was recorded, only
    that UUID); any other instance is someone else's, and the claim is refused."""
    before = {d.device: d for d in previous.devices} if previous else {}
    existing = tuple(existing)
    out = []
    for d in devices:
        if not d.dynamic_mig:
            out.append(d)
            continue
        found = instance_at(d, existing)
        prev = before.get(d.device)
        if found is None:
            out.append(d.model_copy(update={"uuid": "", "mig_owned": True}))
        elif prev is not None and prev.ours and prev.uuid in ("", found.uuid):
            out.append(d.model_copy(update={"uuid": found.uuid, "mig_owned": True}))
        else:
            raise PrepareError(
                f"MIG placement {d.mig_profile} at memory slice {d.mig_start} on GPU "
                f"{d.mig_parent} is taken by instance {found.uuid}, which gpudra did not "
                "create (an external instance): remove it, or leave this GPU out of "
                "--dynamic-mig-gpus",
                ErrorType.DEVICE_BUSY,
            )
    return tuple(out)
