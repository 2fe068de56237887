"""Fault injection into a mock node's shared state file: what ``gpudra mock inject`` and the
mock backend's test hooks write, and every process using the file sees.

An XID or ECC error queues a health event; ``lost`` marks the GPU lost (inventory reports
it, every operation on it fails) and queues a ``gpu-lost`` event; ``recover`` clears that,
forgets the GPU's recovery action, puts its time slice back to the default (as a reset does),
and queues a ``recovered`` event, which ends the GPU's faults (after the daemons' damping).
A recovery action (NVML's GPU recovery-action field) is set with an XID, or alone
(``recovery-action``, no event: NVML's answer changes, as when the driver finds the GPU fine
again and reads NONE).
"""

from __future__ import annotations

from typing import Literal

from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.mock.state import MockState, PendingEvent, StateStore

FaultName = Literal["xid", "ecc-double-bit", "ecc-single-bit", "lost", "recover", "recovery-action"]
_EVENT_KIND = {"lost": "gpu-lost", "recover": "recovered"}


def inject(
    store: StateStore,
    gpu_index: int,
    fault: FaultName,
    xid: int | None = None,
    recovery_action: RecoveryAction | None = None,
) -> None:
    if gpu_index < 0:
        raise ValueError(f"GPU index must be >= 0, got {gpu_index}")
    if (fault == "xid") != (xid is not None):
        raise ValueError("an XID needs its number (and only an XID has one)")
    if (fault == "recovery-action") and recovery_action is None:
        raise ValueError("recovery-action needs the action")
    if recovery_action is not None and fault not in ("xid", "recovery-action"):
        raise ValueError(f"a recovery action goes with an XID or alone, not with {fault}")
    ev = None
    if fault != "recovery-action":
        ev = PendingEvent(kind=_EVENT_KIND.get(fault, fault), gpu_index=gpu_index, xid=xid)

    def change(s: MockState) -> tuple[MockState, None]:
        lost = set(s.lost)
        actions = dict(s.recovery_actions)
        slices = dict(s.time_slices)
        if fault == "lost":
            lost.add(gpu_index)
        elif fault == "recover":
            lost.discard(gpu_index)
            actions.pop(gpu_index, None)
            slices.pop(gpu_index, None)
        if recovery_action is not None:
            actions[gpu_index] = recovery_action
        update = {
            "lost": tuple(sorted(lost)),
            "recovery_actions": actions,
            "time_slices": slices,
            "events": (*s.events, ev) if ev is not None else s.events,
        }
        return s.model_copy(update=update), None

    store.update(change)
