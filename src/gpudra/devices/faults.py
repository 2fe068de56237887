"""GPU faults (pure): which events are the GPU's fault, how long a fault lasts, its taint.

One answer for both node daemons: the DRA plugin turns a GPU's faults into device taints in
its ResourceSlices, the device plugin into Unhealthy devices in ListAndWatch.

* **Classification.** NVML's verdict first: since driver 565 an XID comes with the GPU's
  *recovery action* (``RecoveryAction``, NVML's ``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION``,
  read by ``gpudra.nvml``), and an XID is the GPU's fault iff that action is not NONE (as in
  NVIDIA's DRA driver since its PR #1441).  Where the driver lacks the field the XID is the
  GPU's unless it is one NVIDIA attributes to the application (13, 31, 43, 45, 68, 109: the
  ignore list of NVIDIA's device plugin and older DRA driver).  A double-bit ECC error and a
  lost GPU are fatal; a single-bit ECC error is not.
* **Taints** (``resource.k8s.io/v1`` device taints, KEP-5055): a fatal XID is
  ``gpu.gpudra.io/xid=<n>:NoSchedule``, double-bit ECC ``gpu.gpudra.io/ecc=double-bit:NoSchedule``,
  a lost GPU ``gpu.gpudra.io/gpu-lost=true:NoExecute`` (the effect is a setting), and a
  non-fatal event the same key with effect ``None`` where the server has it (1.35+), so it
  is visible but changes nothing schedulable.  ``timeAdded`` is the fault's first time,
  stable across republishing.
* **Recovery, damped.** A fault ends when the GPU recovers (NVML reads a lost GPU again, a
  ``recovered`` event), and a GPU's XID faults end when NVML's recovery action reads NONE
  again (``recovery_action``: the driver says nothing is left to do); its taint stays until
  the GPU has been clear for ``recovery_s``, and a new fault in that window keeps it, so a
  flapping GPU is not handed out between flaps.  A recovery action that reads other than
  NONE again within the window keeps the XID faults too, and makes them as fatal as it says
  at once: a taint tightens immediately and loosens only after the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

# XIDs NVIDIA attributes to the application, not the GPU (NVIDIA's default ignore list)
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
# what the XIDs gpudra names mean (NVIDIA's XID catalogue), for messages
XID_NAMES: Mapping[int, str] = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup, due to previous errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint/warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapping recording failure",
    68: "NVDEC0 exception",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    109: "context switch timeout",
    119: "GSP RPC timeout",
    120: "GSP error",
}
TAINT_PREFIX = "gpu.gpudra.io"
TaintEffect = Literal["NoSchedule", "NoExecute", "None"]


class FaultKind(StrEnum):
    XID = "xid"
    ECC_DOUBLE_BIT = "ecc-double-bit"
    ECC_SINGLE_BIT = "ecc-single-bit"
    LOST = "gpu-lost"


class RecoveryAction(StrEnum):
    """What the driver says must be done for a GPU to be usable again: NVML's
    ``nvmlDeviceGpuRecoveryAction_t`` (the numbers are ``gpudra.nvml.recovery_action``'s).

    ``OTHER`` is a value newer than this list (nvidia-ml-py 13.x adds IMEX-domain recovery,
    bus reset, system reboot): an action all the same, so the XID is fatal."""

    NONE = "none"
    GPU_RESET = "gpu-reset"
    NODE_REBOOT = "node-reboot"
    DRAIN_P2P = "drain-p2p"
    DRAIN_AND_RESET = "drain-and-reset"
    OTHER = "other"


_ACTION_TEXT = {
    RecoveryAction.NONE: "no recovery action needed",
    RecoveryAction.GPU_RESET: "needs a GPU reset",
    RecoveryAction.NODE_REBOOT: "needs a node reboot",
    RecoveryAction.DRAIN_P2P: "needs its peer-to-peer traffic drained",
    RecoveryAction.DRAIN_AND_RESET: "needs peer-to-peer drained and a GPU reset",
    RecoveryAction.OTHER: "needs a recovery action this gpudra does not know",
}


def is_fatal(kind: FaultKind, xid: int | None = None, action: RecoveryAction | None = None) -> bool:
    """Whether the fault is the GPU's; for an XID, NVML's recovery ``action`` decides where
    the driver gave one (None: it lacks the field, and the ignore list decides)."""
    if kind is FaultKind.XID:
        if action is not None:
            return action is not RecoveryAction.NONE
        return xid is None or xid not in APPLICATION_XIDS
    return kind is not FaultKind.ECC_SINGLE_BIT


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    since: float  # unix time of its first report
    xid: int | None = None
    # an XID's: NVML's GPU recovery action with it (None: the driver has no such field)
    recovery_action: RecoveryAction | None = None

    @property
    def fatal(self) -> bool:
        return is_fatal(self.kind, self.xid, self.recovery_action)

    @property
    def key(self) -> tuple[str, str]:
        """The taint's key and value."""
        if self.kind is FaultKind.XID:
            return f"{TAINT_PREFIX}/xid", str(self.xid)
        if self.kind is FaultKind.LOST:
            return f"{TAINT_PREFIX}/gpu-lost", "true"
        return f"{TAINT_PREFIX}/ecc", self.kind.value.removeprefix("ecc-")

    def describe(self) -> str:
        if self.kind is FaultKind.XID:
            name = XID_NAMES.get(self.xid or -1)
            action = self.recovery_action
            return (
                f"XID {self.xid}"
                + (f" ({name})" if name else "")
                + (f"; NVML: {_ACTION_TEXT[action]}" if action is not None else "")
            )
        return {
            FaultKind.LOST: "GPU lost (NVML cannot reach it)",
            FaultKind.ECC_DOUBLE_BIT: "double-bit ECC error",
            FaultKind.ECC_SINGLE_BIT: "single-bit ECC error",
        }[self.kind]

    def taint(self, *, lost_effect: TaintEffect = "NoExecute") -> dict[str, Any]:
        key, value = self.key
        effect: TaintEffect = "None"
        if self.fatal:
            effect = lost_effect if self.kind is FaultKind.LOST else "NoSchedule"
        added = datetime.fromtimestamp(int(self.since), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"key": key, "value": value, "effect": effect, "timeAdded": added}


@dataclass
class _Gpu:
    faults: dict[tuple[FaultKind, int | None], Fault] = field(default_factory=dict)
    cleared_at: float | None = None  # recovered at; None while a fault is active
    # NVML's recovery action read NONE at: the XID faults (only) end recovery_s later
    xids_cleared_at: float | None = None

    def xids(self) -> list[tuple[FaultKind, int | None]]:
        return [k for k in self.faults if k[0] is FaultKind.XID]


class GpuFaults:
    """Per GPU UUID: its faults, active or recovered less than ``recovery_s`` ago."""

    def __init__(self, recovery_s: float) -> None:
        self.recovery_s = recovery_s
        self._gpus: dict[str, _Gpu] = {}

    def report(
        self,
        uuid: str,
        kind: FaultKind,
        now: float,
        xid: int | None = None,
        recovery_action: RecoveryAction | None = None,
    ) -> bool:
        """A fault now; True if it is new (not already active on that GPU) or NVML's recovery
        action with it changed.  An action of None (not read) keeps the one known."""
        g = self._gpus.setdefault(uuid, _Gpu())
        fresh = g.cleared_at is not None or (kind, xid) not in g.faults
        if g.cleared_at is not None:  # a fault while recovering: the earlier ones still count
            g.cleared_at = None
        if kind is FaultKind.XID and g.xids_cleared_at is not None:  # the same for XIDs
            g.xids_cleared_at, fresh = None, True
        old = g.faults.get((kind, xid))
        if old is None:
            g.faults[(kind, xid)] = Fault(kind, now, xid, recovery_action)
        elif recovery_action is not None and recovery_action is not old.recovery_action:
            g.faults[(kind, xid)] = replace(old, recovery_action=recovery_action)
            fresh = True
        return fresh

    def recover(self, uuid: str, now: float) -> bool:
        """The GPU is fine again; its faults end ``recovery_s`` from now.  True if it had any."""
        g = self._gpus.get(uuid)
        if g is None or g.cleared_at is not None:
            return False
        g.cleared_at = now
        return True

    def xid_gpus(self) -> list[str]:
        """The GPUs with XID faults that NVML's recovery action could end (not recovering)."""
        return [u for u, g in self._gpus.items() if g.cleared_at is None and g.xids()]

    def recovery_action(self, uuid: str, action: RecoveryAction, now: float) -> bool:
        """NVML's recovery action for the GPU, read now.  NONE: its XID faults end
        ``recovery_s`` from now (the other faults stay).  Anything else: they stay, with that
        action (fatal at once), and an ending in progress is called off.  True if anything
        changed."""
        g = self._gpus.get(uuid)
        if g is None or g.cleared_at is not None or not g.xids():
            return False
        if action is RecoveryAction.NONE:
            if g.xids_cleared_at is not None:
                return False
            g.xids_cleared_at = now
            return True
        changed = g.xids_cleared_at is not None
        g.xids_cleared_at = None
        for k in g.xids():
            if g.faults[k].recovery_action is not action:
                g.faults[k] = replace(g.faults[k], recovery_action=action)
                changed = True
        return changed

    def lost(self, uuid: str) -> bool:
        g = self._gpus.get(uuid)
        return bool(g and g.cleared_at is None and (FaultKind.LOST, None) in g.faults)

    def current(self, now: float) -> dict[str, tuple[Fault, ...]]:
        """GPU UUID -> its faults that still count now (active, or damped after recovery)."""
        for g in self._gpus.values():
            if self._over(g.xids_cleared_at, now):
                for k in g.xids():
                    del g.faults[k]
                g.xids_cleared_at = None
        for uuid in [
            u for u, g in self._gpus.items() if self._over(g.cleared_at, now) or not g.faults
        ]:
            del self._gpus[uuid]
        return {u: tuple(g.faults.values()) for u, g in self._gpus.items()}

    def next_change(self) -> float | None:
        """When the earliest damping window ends (the caller republishes then)."""
        ends = [
            t + self.recovery_s
            for g in self._gpus.values()
            for t in (g.cleared_at, g.xids_cleared_at)
            if t is not None
        ]
        return min(ends) if ends else None

    def _over(self, cleared_at: float | None, now: float) -> bool:
        return cleared_at is not None and now - cleared_at >= self.recovery_s


def fault_taints(
    faults: tuple[Fault, ...], *, lost_effect: TaintEffect, effect_none: bool, room: int
) -> list[dict[str, Any]]:
    """The device taints of one GPU's faults: fatal first, informational ones (effect None)
    only where the server has that effect, at most ``room`` (the API's per-device limit
    minus the taints already there)."""
    taints = [f.taint(lost_effect=lost_effect) for f in sorted(faults, key=lambda f: not f.fatal)]
    kept = [t for t in taints if t["effect"] != "None" or effect_none]
    return kept[: max(room, 0)]
