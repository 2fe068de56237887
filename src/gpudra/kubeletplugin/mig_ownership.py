"""Whose MIG instance is it? (pure)  A dynamic-MIG device is an instance gpudra creates at
prepare; an instance found at its placement is adopted only when an earlier attempt of the
same claim had marked it gpudra's (a crash between creating it and recording its UUID), and
any other instance there is someone else's: the claim is refused, never the instance
destroyed."""

from __future__ import annotations

from collections.abc import Iterable

from gpudra.devices.gpu import MigDevice
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice


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
