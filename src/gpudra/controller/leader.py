"""Leader election on a coordination.k8s.io Lease, so two controller replicas can run.

Only the holder reconciles.  The holder renews every ``renew_s``; anyone may take the Lease
once ``renewTime + leaseDurationSeconds`` has passed.  Updates carry the resourceVersion,
so two candidates can never both win.  A leader that cannot renew in time stops leading
(the caller exits, as upstream controllers do, rather than risk two leaders).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gpudra.kube.client import KubeClient
from gpudra.kube.errors import AlreadyExists, Conflict, NotFound
from gpudra.kube.resources import LEASES

log = logging.getLogger(__name__)


def _now_micro(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> float:
    if not ts:
        return 0.0
    ts = ts.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in ts else "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(ts, fmt).replace(tzinfo=UTC).timestamp()


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        duration_s: int = 15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration_s = duration_s
        self._clock = clock
        self.last_renew = 0.0

    def _spec(self, now: float, lease: dict[str, Any] | None) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        same = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": old.get("acquireTime") if same else _now_micro(now),
            "renewTime": _now_micro(now),
            "leaseTransitions": int(old.get("leaseTransitions", 0))
            + (0 if same or not lease else 1),
        }

    def try_acquire_or_renew(self) -> bool:
        """True if we hold the Lease after this call."""
        now = self._clock()
        try:
            lease = self._client.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            try:
                self._client.create(LEASES, {
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None)})  # fmt: skip
            except (AlreadyExists, Conflict):
                return False
            self.last_renew = now
            log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        expires = _parse(spec.get("renewTime")) + float(spec.get("leaseDurationSeconds") or 15)
        if holder not in (None, "", self.identity) and now < expires:
            return False
        lease["spec"] = self._spec(now, lease)
        try:
            self._client.replace(LEASES, lease)
        except (Conflict, NotFound):
            return False
        if holder != self.identity:
            log.info("took over lease %s/%s from %s", self.namespace, self.name, holder)
        self.last_renew = now
        return True

    def still_leader(self) -> bool:
        """Whether our last successful renewal is recent enough to act on."""
        return self._clock() - self.last_renew < self.duration_s * 2 / 3
