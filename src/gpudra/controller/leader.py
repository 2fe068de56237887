"""Leader election on a coordination.k8s.io Lease, so two controller replicas can run.

As client-go's ``leaderelection``:

* Expiry is judged by *observation*, never by comparing clocks: a candidate remembers the
  local (monotonic) time at which it last saw the Lease record *change*; the holder is gone
  once ``lease_duration_s`` has passed since then without a change.  The ``renewTime``
  written into the Lease is informational (another replica's clock may be skewed).
* The holder renews on its own thread every ``retry_period_s``, independent of how long a
  reconcile pass takes, and stops leading the moment ``renew_deadline_s`` (< the lease
  duration) has passed since its last successful renewal: ``leading()`` turns False before
  any other replica can take the Lease, so checking it before every write batch fences a
  stale leader's writes.
* Updates carry the resourceVersion, so two candidates can never both win a race.
* ``release()`` (on SIGTERM) hands the Lease back at once, so a standby takes over without
  waiting for expiry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gpudra.kube.client import KubeClient
from gpudra.kube.errors import AlreadyExists, Conflict, KubeError, NotFound
from gpudra.kube.resources import LEASES

log = logging.getLogger(__name__)


def _micro(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{retry_period_s}, {renew_deadline_s}, {lease_duration_s}"
            )
        self._client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen
        self._observed_at = 0.0  # local time it was first seen like that
        self._renewed_at: float | None = None  # local time of our last successful write
        self.transitions = 0  # times this replica became leader

    # --- state -------------------------------------------------------------------------

    def leading(self) -> bool:
        """Whether this replica may decide and write now: it holds the Lease and renewed it
        less than ``renew_deadline_s`` ago (local time)."""
        with self._lock:
            return (
                self._renewed_at is not None
                and self._clock() - self._renewed_at < self.renew_deadline_s
            )

    def _observe(self, spec: dict[str, Any]) -> None:
        key = {k: spec.get(k) for k in ("holderIdentity", "renewTime", "leaseTransitions")}
        if key != self._observed:
            self._observed, self._observed_at = key, self._clock()

    def _spec(self, old: dict[str, Any] | None) -> dict[str, Any]:
        old = old or {}
        same = old.get("holderIdentity") == self.identity
        now = _micro(self._wall())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "acquireTime": old.get("acquireTime") if same else now,
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0)
            + (0 if same or not old.get("holderIdentity") else 1),
        }

    # --- one attempt ---------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease after it."""
        started = self._clock()
        try:
            lease = self._client.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            body = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                created = self._client.create(LEASES, body)
            except (AlreadyExists, Conflict):
                return False
            self._won(created, started, took_from=None)
            return True
        spec = lease.get("spec") or {}
        with self._lock:
            self._observe(spec)
            holder = spec.get("holderIdentity") or ""
            expired = self._clock() - self._observed_at >= self.lease_duration_s
        if holder not in ("", self.identity) and not expired:
            return False
        lease["spec"] = self._spec(spec)
        try:
            updated = self._client.replace(LEASES, lease)
        except (Conflict, NotFound):
            return False
        self._won(updated, started, took_from=holder if holder != self.identity else None)
        return True

    def _won(self, lease: dict[str, Any], started: float, *, took_from: str | None) -> None:
        with self._lock:
            was = self._renewed_at is not None
            self._observe(lease.get("spec") or {})
            # the renewal counts from when it was sent: the other replicas observed it no
            # earlier than that
            self._renewed_at = started
        if not was:
            self.transitions += 1
            how = f"took over from {took_from}" if took_from else "acquired"
            log.info("%s lease %s/%s as %s", how, self.namespace, self.name, self.identity)

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_lost: Callable[[], None] | None = None) -> None:
        """Acquire, then renew every retry period until ``stop``; when a renewal has not
        succeeded within the renew deadline, leadership is lost: ``on_lost`` is called once
        and the loop ends (the process should exit, as upstream controllers do)."""
        while not stop.is_set():
            try:
                self.try_acquire_or_renew()
            except KubeError as e:
                log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            with self._lock:
                had = self._renewed_at is not None
            if had and not self.leading():
                log.error(
                    "could not renew lease %s/%s within %.0fs: no longer leading",
                    self.namespace,
                    self.name,
                    self.renew_deadline_s,
                )
                with self._lock:
                    self._renewed_at = None
                if on_lost is not None:
                    on_lost()
                return
            stop.wait(self.retry_period_s)

    def release(self) -> None:
        """Give the Lease up now (if we hold it), so a standby need not wait for expiry."""
        with self._lock:
            held = self._renewed_at is not None
            self._renewed_at = None
        if not held:
            return
        try:
            lease = self._client.get(LEASES, self.name, namespace=self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro(self._wall()))
            self._client.replace(LEASES, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as e:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, e)
