"""An Event on the Node for every GPU fault and recovery, sent off the caller's thread.

The GPU watch says when a GPU's faults change (``gpudra.nodeagent.watch``, through the DRA
daemon's listener); ``gpu_changed`` only queues, so a slow or absent API server never
delays a publish or a prepare.  A sender thread creates the Events (``gpudra.api.events``);
one it cannot send is logged and dropped (the taint in the slice and the log say the same),
and the queue is bounded, so a flapping GPU cannot grow memory.

What is said: ``GpuFault`` (Warning) when a GPU gains faults, naming each and the taint its
devices now carry; ``GpuRecovered`` (Normal) when its last fault has cleared and the taints
are gone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from gpudra.api.events import EventType, event, node_ref, rfc3339
from gpudra.devices.faults import Fault, TaintEffect
from gpudra.kube.client import KubeClient
from gpudra.kube.resources import EVENTS

log = logging.getLogger(__name__)

COMPONENT = "gpudra-kubelet-plugin"
QUEUE_LIMIT = 256


def _taint_text(f: Fault, lost_effect: TaintEffect) -> str:
    t = f.taint(lost_effect=lost_effect)
    return f"{t['key']}={t['value']}:{t['effect']}"


def gpu_event(
    index: int,
    uuid: str,
    before: tuple[Fault, ...],
    now: tuple[Fault, ...],
    *,
    lost_effect: TaintEffect,
) -> tuple[EventType, str, str] | None:
    """What to say about a GPU whose faults went from ``before`` to ``now`` (None: nothing)."""
    gpu = f"GPU {index} ({uuid})"
    old = {(f.kind, f.xid) for f in before}
    new = [f for f in now if (f.kind, f.xid) not in old]
    if new:
        parts = []
        for f in new:
            if f.fatal:
                parts.append(
                    f"{f.describe()}: its devices are tainted {_taint_text(f, lost_effect)}"
                )
            else:
                parts.append(f"{f.describe()} (informational: nothing is withheld)")
        return EventType.WARNING, "GpuFault", f"{gpu}: " + "; ".join(parts)
    if before and not now:
        what = ", ".join(f.describe() for f in before)
        return EventType.NORMAL, "GpuRecovered", f"{gpu}: recovered from {what}; taints removed"
    return None


class NodeEvents:
    def __init__(
        self,
        client: KubeClient,
        *,
        node_name: str,
        lost_effect: TaintEffect,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._node = node_name
        self._lost_effect = lost_effect
        self._clock = clock
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_LIMIT)
        self.sent = 0
        self.dropped = 0

    def gpu_changed(
        self, index: int, uuid: str, before: tuple[Fault, ...], now: tuple[Fault, ...]
    ) -> None:
        said = gpu_event(index, uuid, before, now, lost_effect=self._lost_effect)
        if said is None:
            return
        kind, reason, message = said
        ev = event(
            node_ref(self._node),
            kind,
            reason,
            message,
            now=rfc3339(self._clock()),
            component=COMPONENT,
            host=self._node,
        )
        try:
            self._queue.put_nowait(ev)
        except queue.Full:
            self.dropped += 1
            log.warning("node event queue full; not sending %s: %s", reason, message)

    def run(self, stop: threading.Event) -> None:
        """Send queued Events until ``stop`` (then what is left, once)."""
        while True:
            try:
                ev = self._queue.get(timeout=0.5)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            try:
                self._client.create(EVENTS, ev, namespace=ev["metadata"]["namespace"])
            except Exception as e:  # KubeError, or a transport failure: never the thread's end
                self.dropped += 1
                log.warning("cannot send the %s event on node %s: %s", ev["reason"], self._node, e)
            else:
                self.sent += 1
