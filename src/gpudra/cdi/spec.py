"""Build CDI specs (pure): one per prepared DRA claim, and the device plugin's node-wide one.

Claim specs: kind ``k8s.gpu.gpudra.io/claim``; device names are ``<claimUID>-<device>`` so
two claims never collide.  The claim-wide edits carry ``NVIDIA_VISIBLE_DEVICES`` (all UUIDs of the
claim) and, in real mode, the control device nodes; each device adds its own device node
and a ``GPUDRA_DEVICE_<NAME>`` variable.  Spec-level annotations record the claim (and, from
the node daemon, its full device records), so the node can rebuild its state from the specs
on disk if its checkpoint is ever lost.  An MPS claim's containers also get its daemon's pipe
and log dirs, bind-mounted where NVIDIA's driver puts them (``/tmp/nvidia-mps``; the log at
the daemon's ``/var/log/nvidia-mps``), the ``CUDA_MPS_*`` variables pointing there, and the
claim's default active thread percentage; a claim holding a share of a GPU gets its share as
its clients' thread percentage and pinned memory limit (the GPU's daemon has no defaults).

The device plugin's spec (``device_plugin_spec``): kind ``k8s.gpu.gpudra.io/device``, one
file for the node, one CDI device per advertised GPU or MIG device named as in the node
catalogue (``k8s.gpu.gpudra.io/device=gpu-3``): the kubelet's device-plugin API has no
"deallocate", so per-container specs could never be removed.  A device's own edits are the
same in both kinds (``device_edits``).
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


# where an MPS claim's containers see its daemon's dirs (NVIDIA's driver's paths)
MPS_PIPE_DIR = "/tmp/nvidia-mps"
MPS_LOG_DIR = "/var/log/nvidia-mps"
_MOUNT_OPTIONS = ["rw", "nosuid", "nodev", "bind"]


@dataclass(frozen=True)
class CdiMps:
    """A claim's MPS daemon as its containers reach it (host dirs), and its clients' own
    settings: the thread percentage, and (a share of a GPU) the pinned memory limit "<n>M"
    ("" none)."""

    pipe_dir: str
    log_dir: str
    active_thread_percentage: int | None = None
    pinned_limit: str = ""


def mps_edits(mps: CdiMps) -> dict[str, Any]:
    """What an MPS claim adds to its containers: the daemon's dirs and the client variables.
    A claim's own daemon applies its config's pinned limits as its defaults to every client
    (``set_default_device_pinned_mem_limit``, as in NVIDIA's driver), so none is repeated
    here; a share of a GPU (one daemon for all its claims, no defaults) gets its limit as
    ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` for device 0: its containers see only that GPU."""
    env = [f"CUDA_MPS_PIPE_DIRECTORY={MPS_PIPE_DIR}", f"CUDA_MPS_LOG_DIRECTORY={MPS_LOG_DIR}"]
    if mps.active_thread_percentage is not None:
        env.append(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={mps.active_thread_percentage}")
    if mps.pinned_limit:
        env.append(f"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0={mps.pinned_limit}")
    mounts = [
        {"hostPath": mps.pipe_dir, "containerPath": MPS_PIPE_DIR, "options": _MOUNT_OPTIONS},
        {"hostPath": mps.log_dir, "containerPath": MPS_LOG_DIR, "options": _MOUNT_OPTIONS},
    ]
    return {"env": env, "mounts": mounts}


DEVICE_PLUGIN_CLASS = "device"
DEVICE_PLUGIN_KIND = f"{VENDOR}/{DEVICE_PLUGIN_CLASS}"
DEVICE_PLUGIN_SPEC_FILE = f"{VENDOR}-{DEVICE_PLUGIN_CLASS}.json"


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


def device_edits(d: CdiDevice, dev_root: str | None) -> dict[str, Any]:
    """What one device adds to a container: its device nodes and ``GPUDRA_DEVICE_<NAME>``."""
    return {
        "env": [f"{_env_name(d.name)}={d.uuid}"],
        "deviceNodes": [_node(p, dev_root) for p in d.device_nodes],
    }


def plugin_device_id(device: str) -> str:
    """The CDI name of a device in the device plugin's spec."""
    return f"{DEVICE_PLUGIN_KIND}={device}"


def device_plugin_spec(devices: list[CdiDevice], dev_root: str | None) -> dict[str, Any]:
    """The device plugin's node-wide spec: the control nodes for any of its devices, and one
    CDI device per advertised device."""
    return {
        "cdiVersion": CDI_VERSION,
        "kind": DEVICE_PLUGIN_KIND,
        "containerEdits": {"deviceNodes": [_node(p, dev_root) for p in CONTROL_NODES]},
        "devices": [{"name": d.name, "containerEdits": device_edits(d, dev_root)} for d in devices],
    }


def claim_spec(
    *,
    claim_uid: str,
    namespace: str,
    name: str,
    devices: list[CdiDevice],
    dev_root: str | None,
    annotations: dict[str, str] | None = None,
    mps: CdiMps | None = None,
) -> dict[str, Any]:
    """The CDI spec for one claim.  ``dev_root`` maps device nodes to fake host files (mock
    mode); None means the real /dev nodes.  ``annotations`` (full keys, e.g.
    ``DEVICES_ANNOTATION``) are added to the spec's own; ``mps``: the claim's MPS daemon."""
    uuids = ",".join(d.uuid for d in devices)
    edits: dict[str, Any] = {
        "env": [f"NVIDIA_VISIBLE_DEVICES={uuids}", f"GPUDRA_CLAIM={namespace}/{name}"],
        "deviceNodes": [_node(p, dev_root) for p in CONTROL_NODES],
    }
    if mps is not None:
        extra = mps_edits(mps)
        edits["env"] += extra["env"]
        edits["mounts"] = extra["mounts"]
    return {
        "cdiVersion": CDI_VERSION,
        "kind": KIND,
        "annotations": {
            CLAIM_UID_ANNOTATION: claim_uid,
            CLAIM_ANNOTATION: f"{namespace}/{name}",
            **(annotations or {}),
        },
        "containerEdits": edits,
        "devices": [
            {"name": f"{claim_uid}-{d.name}", "containerEdits": device_edits(d, dev_root)}
            for d in devices
        ],
    }
