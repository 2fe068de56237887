"""Rebuild the checkpoint from the CDI specs on disk when the checkpoint is unreadable.

Each claim spec records its claim and, in the ``gpudra.io/devices`` annotation, the claim's
device records exactly as the checkpoint holds them: physical footprints (so the exclusivity
guard still sees a MIG slice in use under its GPU), dynamic-MIG placement, instance UUID and
ownership (so unprepare destroys the instance, and ``--remove-unknown-mig`` leaves it alone).
Specs written before that annotation give back what they can: device names and UUIDs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from gpudra.cdi.spec import CLAIM_ANNOTATION, DEVICES_ANNOTATION, device_id
from gpudra.cdi.writer import CdiWriter
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice

log = logging.getLogger(__name__)


def _recorded(uid: str, raw: str) -> tuple[PreparedDevice, ...] | None:
    try:
        records = json.loads(raw)
        if not isinstance(records, list):
            raise ValueError("not a list")
        return tuple(PreparedDevice.model_validate(r) for r in records)
    except (ValueError, ValidationError) as e:
        log.warning("CDI spec of claim %s: unreadable device records (%s)", uid, e)
        return None


def _from_edits(uid: str, spec: dict[str, Any], pool: str) -> tuple[PreparedDevice, ...]:
    devices = []
    for dev in spec.get("devices") or []:
        short = str(dev.get("name", "")).removeprefix(f"{uid}-")
        env = (dev.get("containerEdits") or {}).get("env") or []
        uuid = next((e.split("=", 1)[1] for e in env if e.startswith("GPUDRA_DEVICE_")), "")
        devices.append(
            PreparedDevice(
                request_names=(),
                pool=pool,
                device=short,
                cdi_device_ids=(device_id(uid, short),),
                uuid=uuid,
            )
        )
    return tuple(devices)


def claim_from_spec(uid: str, spec: dict[str, Any], *, pool: str) -> PreparedClaim | None:
    annotations = spec.get("annotations") or {}
    ns, _, name = annotations.get(CLAIM_ANNOTATION, "/").partition("/")
    raw = annotations.get(DEVICES_ANNOTATION)
    devices = (_recorded(uid, raw) if raw is not None else None) or _from_edits(uid, spec, pool)
    if not ns or not devices:
        return None
    return PreparedClaim(uid=uid, namespace=ns, name=name, state="prepared", devices=devices)


def rebuild(cdi: CdiWriter, *, pool: str) -> dict[str, PreparedClaim]:
    out = {}
    for uid, spec in cdi.read_all().items():
        claim = claim_from_spec(uid, spec, pool=pool)
        if claim is not None:
            out[uid] = claim
    return out
