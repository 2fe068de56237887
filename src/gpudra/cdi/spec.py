"""Build the CDI spec of one prepared claim (pure).

Kind ``k8s.gpu.gpudra.io/claim``; device names are ``<claimUID>-<device>`` so two claims
never collide.  The claim-wide edits carry ``NVIDIA_VISIBLE_DEVICES`` (all UUIDs of the
claim) and, in real mode, the control device nodes; each device adds its own device node
and a ``GPUDRA_DEVICE_<NAME>`` variable.  Spec-level annotations record the claim (and, from
the node daemon, its full device records), so the node can rebuild its state from the specs
on disk if its checkpoint is ever lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CDI_VERSION = "0.6.0"
VENDOR = "k8s.gpu.gpudra.io"
CLASS = "claim"
KIND = f"{VENDOR}/{CLASS}"
CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
# the spec-level annotations, the one place their keys are spelled
CLAIM_UID_ANNOTATION = "gpudra.io/claim-uid"
CLAIM_ANNOTATION = "gpudra.io/claim"  # <namespace>/<name>
# the claim's checkpoint device records (JSON), for recovery when the checkpoint is lost
DEVICES_ANNOTATION = "gpudra.io/devices"


@dataclass(frozen=True)
class CdiDevice:
    """One allocated device as the container should see it."""

    name: str  # the device's name in the pool, e.g. gpu-3
    uuid: str  # GPU or MIG UUID
    device_nodes: tuple[str, ...]  # container paths, e.g. /dev/nvidia3


def device_id(claim_uid: str, device: str) -> str:
    return f"{KIND}={claim_uid}-{device}"


def spec_file_name(claim_uid: str) -> str:
    return f"{VENDOR}-{CLASS}_{claim_uid}.json"


def _env_name(device: str) -> str:
    return "GPUDRA_DEVICE_" + re.sub(r"[^A-Z0-9]", "_", device.upper())


def _node(path: str, dev_root: str | None) -> dict[str, str]:
    if dev_root is None:
        return {"path": path}
    return {"path": path, "hostPath": f"{dev_root.rstrip('/')}/{path.rsplit('/', 1)[-1]}"}


def claim_spec(
    *,
    claim_uid: str,
    namespace: str,
    name: str,
    devices: list[CdiDevice],
    dev_root: str | None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CDI spec for one claim.  ``dev_root`` maps device nodes to fake host files (mock
    mode); None means the real /dev nodes.  ``annotations`` (full keys, e.g.
    ``DEVICES_ANNOTATION``) are added to the spec's own."""
    uuids = ",".join(d.uuid for d in devices)
    return {
        "cdiVersion": CDI_VERSION,
        "kind": KIND,
        "annotations": {
            CLAIM_UID_ANNOTATION: claim_uid,
            CLAIM_ANNOTATION: f"{namespace}/{name}",
            **(annotations or {}),
        },
        "containerEdits": {
            "env": [f"NVIDIA_VISIBLE_DEVICES={uuids}", f"GPUDRA_CLAIM={namespace}/{name}"],
            "deviceNodes": [_node(p, dev_root) for p in CONTROL_NODES],
        },
        "devices": [
            {
                "name": f"{claim_uid}-{d.name}",
                "containerEdits": {
                    "env": [f"{_env_name(d.name)}={d.uuid}"],
                    "deviceNodes": [_node(p, dev_root) for p in d.device_nodes],
                },
            }
            for d in devices
        ],
    }
