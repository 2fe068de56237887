"""Rebuild the checkpoint from the CDI specs on disk when the checkpoint is unreadable.

Each claim spec records its claim (annotations) and device UUIDs (env), which is all that
unprepare and the exclusivity guard need.  Request names are not recorded there; a rebuilt
device serves every request of its claim, which is what an empty list means to the kubelet.
"""

from __future__ import annotations

from typing import Any

from gpudra.cdi.spec import ANNOTATION_PREFIX, device_id
from gpudra.cdi.writer import CdiWriter
from gpudra.kubeletplugin.checkpoint import PreparedClaim, PreparedDevice


def claim_from_spec(uid: str, spec: dict[str, Any], *, pool: str) -> PreparedClaim | None:
    ns, _, name = (
        (spec.get("annotations") or {}).get(f"{ANNOTATION_PREFIX}claim", "/").partition("/")
    )
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
    if not ns or not devices:
        return None
    return PreparedClaim(uid=uid, namespace=ns, name=name, state="prepared", devices=tuple(devices))


def rebuild(cdi: CdiWriter, *, pool: str) -> dict[str, PreparedClaim]:
    out = {}
    for uid, spec in cdi.read_all().items():
        claim = claim_from_spec(uid, spec, pool=pool)
        if claim is not None:
            out[uid] = claim
    return out
