"""Fault injection into a mock node's shared state file: what ``gpudra mock inject`` and the
mock backend's test hooks write, and every process using the file sees.

An XID or ECC error queues a health event; ``lost`` marks the GPU lost (inventory reports
it, every operation on it fails) and queues a ``gpu-lost`` event; ``recover`` clears that
and queues a ``recovered`` event, which ends the GPU's faults (after the daemons' damping).
"""

from __future__ import annotations

from typing import Literal

from gpudra.nvml.mock.state import MockState, PendingEvent, StateStore

FaultName = Literal["xid", "ecc-double-bit", "ecc-single-bit", "lost", "recover"]
_EVENT_KIND = {"lost": "gpu-lost", "recover": "recovered"}


def inject(store: StateStore, gpu_index: int, fault: FaultName, xid: int | None = None) -> None:
    if gpu_index < 0:
        raise ValueError(f"GPU index must be >= 0, got {gpu_index}")
    if (fault == "xid") != (xid is not None):
        raise ValueError("an XID needs its number (and only an XID has one)")
    ev = PendingEvent(kind=_EVENT_KIND.get(fault, fault), gpu_index=gpu_index, xid=xid)

    def change(s: MockState) -> tuple[MockState, None]:
        lost = set(s.lost)
        if fault == "lost":
            lost.add(gpu_index)
        elif fault == "recover":
            lost.discard(gpu_index)
        return s.model_copy(update={"lost": tuple(sorted(lost)), "events": (*s.events, ev)}), None

    store.update(change)
