"""What the controller tells a user, and only once: an Event and the pod's placement
condition per (reason, message), remembered per pod UID so a pass that decides the same again
says nothing new (the builders are ``controller.events``; this sends them)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gpudra.api.events import rfc3339
from gpudra.api.meta import name_of, namespace_of, uid_of
from gpudra.common.logfmt import bind
from gpudra.controller.events import EventType, condition_patch, pod_event
from gpudra.controller.groups import Group, pod_key
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import KubeError
from gpudra.kube.objects import PatchType
from gpudra.kube.resources import EVENTS, PODS

log = logging.getLogger(__name__)


def pod_uid(pod: dict[str, Any]) -> str:
    """A pod's identity between passes: its UID (a pod recreated under its name is new)."""
    return uid_of(pod) or pod_key(pod)


class Teller:
    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock
        self.said: dict[str, str] = {}  # pod UID -> the last "reason:message" told

    def forget(self, live: set[str]) -> None:
        """Keep the memos of the pods that still exist only."""
        for uid in [u for u in self.said if u not in live]:
            del self.said[uid]

    def tell(self, group: Group, kind: EventType, reason: str, message: str) -> None:
        for pod in group.pods:
            self.tell_pod(pod, kind, reason, message, placed=False)

    def tell_pod(
        self, pod: dict[str, Any], kind: EventType, reason: str, message: str, *, placed: bool
    ) -> None:
        key, uid = pod_key(pod), pod_uid(pod)
        if self.said.get(uid) == f"{reason}:{message}":
            return
        self.said[uid] = f"{reason}:{message}"
        now = rfc3339(self._clock())
        try:
            self._client.create(EVENTS, pod_event(pod, kind, reason, message, now=now))
            self._client.patch_status(
                PODS,
                name_of(pod),
                condition_patch(placed, reason, message, now=now),
                namespace=namespace_of(pod),
                patch_type=PatchType.STRATEGIC,
            )
        except KubeError as e:
            bind(log, pod=key).info("could not report %s on %s: %s", reason, key, e)
