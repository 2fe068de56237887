"""Decide what preparing one claim means on this node (pure: data in, data out).

Given the ResourceClaim as the API server returned it and the node's inventory, either
return the devices to prepare (with their CDI ids and base request names) and the CDI spec
to write, or raise ``PrepareError`` saying exactly what is wrong with the claim.  Also the
exclusivity guard: a device prepared for another claim is refused unless both may share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpudra.cdi.spec import CdiDevice, claim_spec, device_id
from gpudra.devices.gpu import Health, MigDevice
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MEMORY_SLICES
from gpudra.kubeletplugin.checkpoint import PreparedClaim, PreparedDevice
from gpudra.resourceapi import base_request
from gpudra.resourceslices.builder import gpu_device_name
from gpudra.resourceslices.mig import mig_device_name

# the spec's copy of the claim's checkpoint devices: what recovery needs when the checkpoint
# is lost (footprints for the exclusivity guard, MIG identity and ownership for unprepare)
DEVICES_ANNOTATION = "devices"


def device_records(devices: Iterable[PreparedDevice]) -> str:
    return json.dumps([d.model_dump(mode="json", by_alias=True) for d in devices])


class PrepareError(Exception):
    """This claim cannot be prepared here; the message is reported to the kubelet."""


# Kubernetes UIDs are UUIDs; anything a file name can safely carry is accepted, nothing that
# could leave the CDI or checkpoint directory ("/", "..", NUL, spaces)
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_uid(uid: str) -> None:
    """Refuse a claim UID that cannot be a Kubernetes UID before any file path is built
    from it."""
    if not _UID.match(uid) or ".." in uid:
        raise PrepareError(
            f"invalid claim UID {uid!r}: expected a Kubernetes UID (letters, digits, '-', '_', "
            "'.'; at most 128 characters; no '..')"
        )


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.uid})"


@dataclass(frozen=True)
class Plan:
    claim: PreparedClaim
    spec: dict[str, Any]


@dataclass(frozen=True)
class NodeDevice:
    uuid: str  # "" for a dynamic MIG placement: the instance is created by prepare
    device_nodes: tuple[str, ...]
    healthy: bool
    footprint: tuple[str, ...]
    mig: tuple[str, str, int] | None = None  # (parent uuid, profile, start)


def node_devices(inv: Inventory, dynamic: frozenset[int] = frozenset()) -> dict[str, NodeDevice]:
    """Every device name this node may publish -> what preparing it needs: whole GPUs, every
    placement of a dynamic-MIG GPU (created at prepare), and the existing MIG devices of the
    other MIG-enabled GPUs (static MIG, used as they are)."""
    out = {}
    for g in inv.gpus:
        healthy = g.health is Health.HEALTHY
        nodes = (f"/dev/nvidia{g.minor}",)
        out[gpu_device_name(g)] = NodeDevice(
            uuid=g.uuid,
            device_nodes=nodes,
            healthy=healthy,
            footprint=tuple(f"{g.uuid}/{i}" for i in range(MEMORY_SLICES)),
        )
        family = g.mig_profiles() if g.mig_capable else None
        if family is None:
            continue
        if g.index in dynamic:
            for prof in family.profiles:
                for pl in prof.placements():
                    out[mig_device_name(g, prof, pl.start)] = NodeDevice(
                        uuid="",
                        device_nodes=nodes,
                        healthy=healthy,
                        footprint=tuple(f"{g.uuid}/{i}" for i in pl.slices),
                        mig=(g.uuid, prof.name, pl.start),
                    )
            continue
        for m in inv.migs_on(g):
            existing = family.profile(m.profile)
            if existing is not None:
                out[mig_device_name(g, existing, m.placement_start)] = NodeDevice(
                    uuid=m.uuid,
                    device_nodes=nodes + m.capability_nodes,
                    healthy=healthy,
                    footprint=tuple(f"{g.uuid}/{i}" for i in m.placement.slices),
                )
    return out


def _allocated_nodes(allocation: dict[str, Any]) -> set[str] | None:
    """Node names the allocation's node selector pins it to (None: not pinned by name)."""
    terms = (allocation.get("nodeSelector") or {}).get("nodeSelectorTerms") or []
    names: set[str] = set()
    for term in terms:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In":
                names.update(req.get("values") or [])
    return names or None


def plan_claim(
    claim: dict[str, Any],
    ref: ClaimRef,
    *,
    driver: str,
    node_name: str,
    inventory: Inventory,
    dev_root: str | None,
    dynamic: frozenset[int] = frozenset(),
) -> Plan:
    meta = claim.get("metadata") or {}
    if meta.get("uid") != ref.uid:
        raise PrepareError(
            f"claim {ref.namespace}/{ref.name} has UID {meta.get('uid')}, the kubelet asked for "
            f"{ref.uid}: the claim was deleted and recreated"
        )
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        raise PrepareError(f"claim {ref} is not allocated")
    nodes = _allocated_nodes(allocation)
    if nodes is not None and node_name not in nodes:
        raise PrepareError(
            f"claim {ref} is allocated for node {', '.join(sorted(nodes))}, not this node "
            f"({node_name})"
        )
    results = [
        r
        for r in (allocation.get("devices") or {}).get("results") or []
        if r.get("driver") == driver
    ]
    if not results:
        drivers = sorted({r.get("driver", "?") for r in allocation["devices"].get("results", [])})
        raise PrepareError(
            f"claim {ref} has no devices of driver {driver} (allocated drivers: "
            f"{', '.join(drivers) or 'none'})"
        )
    known = node_devices(inventory, dynamic)
    devices: list[PreparedDevice] = []
    for r in results:
        pool, name = r.get("pool", ""), r.get("device", "")
        if pool != node_name:
            raise PrepareError(
                f"claim {ref}: device {pool}/{name} is in pool {pool!r}, not this node's "
                f"pool {node_name!r}"
            )
        dev = known.get(name)
        if dev is None:
            raise PrepareError(
                f"claim {ref}: unknown device {name!r} on node {node_name} "
                f"(known: {', '.join(sorted(known))})"
            )
        if not dev.healthy:
            raise PrepareError(f"claim {ref}: device {name} ({dev.uuid}) is not healthy")
        if any(d.device == name for d in devices):
            continue  # one device serving several requests is prepared once
        requests = sorted(
            {
                base_request(x.get("request", ""))
                for x in results
                if x.get("device") == name and x.get("pool") == pool
            }
        )
        parent, profile, start = dev.mig or ("", "", -1)
        devices.append(
            PreparedDevice(
                request_names=tuple(requests),
                pool=pool,
                device=name,
                cdi_device_ids=(device_id(ref.uid, name),),
                uuid=dev.uuid,
                admin_access=bool(r.get("adminAccess")),
                shareable=bool(r.get("shareID")),
                footprint=dev.footprint,
                mig_parent=parent,
                mig_profile=profile,
                mig_start=start,
            )
        )
    prepared = PreparedClaim(
        uid=ref.uid,
        namespace=ref.namespace,
        name=ref.name,
        state="prepared",
        devices=tuple(devices),
    )
    return finalize(prepared, {}, known=known, dev_root=dev_root)


def finalize(
    claim: PreparedClaim,
    created: dict[str, MigDevice],
    *,
    known: dict[str, NodeDevice],
    dev_root: str | None,
) -> Plan:
    """The claim with the MIG instances created for it (UUIDs, and in real mode their
    capability device nodes), and its CDI spec."""
    devices = tuple(
        d.model_copy(update={"uuid": created[d.device].uuid}) if d.device in created else d
        for d in claim.devices
    )
    done = claim.model_copy(update={"devices": devices})
    cdi = [
        CdiDevice(
            name=d.device,
            uuid=d.uuid,
            device_nodes=known[d.device].device_nodes
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
    )
    return Plan(claim=done, spec=spec)


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
                "--dynamic-mig-gpus"
            )
    return tuple(out)
