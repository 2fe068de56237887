"""A claim's MPS daemon, planned (pure): which daemon, its dirs, its defaults and limits.

A claim whose devices' config asks for MPS gets one daemon for the claim (its UUIDs, dirs
under ``<mps root>/<claim uid>``, defaults; per-device limits normalized as NVIDIA's driver
does, ``claim_config.pinned_limits``).  A claim holding a share of a GPU (consumable
capacity, ``share_plan``) gets the GPU's shared daemon instead, its share as its clients'
limits, when MPS is enabled (without MPS the share is prepared unenforced).  The plan is
checkpointed before the daemon starts (``effects``); its CDI side is ``cdi_mps``.
"""

from __future__ import annotations

from gpudra.catalogue.catalogue import NodeCatalogue
from gpudra.cdi.spec import CdiMps
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.sharing.claim_config import ClaimConfigError, ConfigEntry, pinned_limits
from gpudra.kubeletplugin.sharing.share_plan import mps_config, shared_plan
from gpudra.nodestate.checkpoint import MpsPlan, PreparedClaim, PreparedDevice


def mps_plan(
    mps: dict[str, ConfigEntry | None],
    devices: list[PreparedDevice],
    *,
    claim: str,
    uid: str,
    mps_root: str | None,
    catalogue: NodeCatalogue,
) -> MpsPlan | None:
    """One MPS daemon for the whole claim, or None when no device asks for one (``mps``:
    each device's MPS config entry, ``device_sharing``; ``claim``: the claim as messages name
    it).  Mixing MPS and other devices, or two MPS configs, in one claim is refused: one
    daemon serves all the claim's GPUs with one set of defaults, as in NVIDIA's driver.  A
    share claim (one device, checked before) gets its GPU's shared daemon, with or without an
    MPS config; without MPS on the node, its share is prepared unenforced (an MPS config is
    refused as always)."""
    entries = {e.index: e for e in mps.values() if e is not None}
    if len(entries) > 1:
        where = " and ".join(e.where for e in entries.values())
        raise PrepareError(
            f"claim {claim}: two MPS configs ({where}) apply to its devices; one claim gets one "
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
            f"claim {claim}: {entry.where} asks for MPS but device(s) {', '.join(others)} of "
            "the same claim are not shared with MPS; one claim's devices are all MPS or none: "
            "give every request the MPS config, or split the claim",
            ErrorType.UNSUPPORTED_CONFIG,
        )
    if mps_root is None:
        if entry is None:
            return None  # a share on a node without MPS
        raise PrepareError(
            f"claim {claim}: {entry.where}.sharing.strategy: MPS is not enabled on this node",
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
    except ClaimConfigError as e:
        raise PrepareError(f"claim {claim}: invalid config: {e}", ErrorType.INVALID_CONFIG) from e
    root = f"{mps_root.rstrip('/')}/{uid}"
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


def cdi_mps(plan: MpsPlan | None) -> CdiMps | None:
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
