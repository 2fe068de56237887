"""Keep the node's ResourceSlices equal to the desired ones, for as long as the daemon runs.

Level-triggered: every pass re-lists our slices (field selector on node and driver), plans
against the desired set, and applies the plan.  A watch on the same selector wakes the loop
when someone else changes or deletes them (the kubelet wipes a node's slices when it
restarts and 30 s after the plugin disappears), so they come back within a second.  The
daemon runs ``run`` and ``watch`` on two guarded threads (``gpudra.common.threads``).
Conflicts re-run the pass; errors back off; passes are rate-limited.  No error ends the loop
or its watch (an unexpected one is logged with its traceback and retried).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpudra.kube.client import KubeClient
from gpudra.kube.errors import AlreadyExists, Conflict, KubeError, NotFound
from gpudra.kube.informer import Informer
from gpudra.kube.resources import NODES, RESOURCESLICES
from gpudra.resourceslices.reconcile import SliceChanges, plan

log = logging.getLogger(__name__)

# the desired slices, given the Node owner reference (None until the Node object exists)
DesiredFn = Callable[[dict[str, Any] | None], list[dict[str, Any]]]


class SlicePublisher:
    """Publishes one node's pool.  ``desired(owner)`` builds the slices."""

    def __init__(
        self,
        client: KubeClient,
        *,
        node_name: str,
        driver: str,
        desired: DesiredFn,
        min_interval_s: float = 0.2,
        max_backoff_s: float = 10.0,
        on_api: Callable[[str], None] | None = None,
    ) -> None:
        # told "" after each pass the API server answered, else the error
        self._on_api = on_api or (lambda error: None)
        self._client = client
        self._node = node_name
        self._driver = driver
        self._desired = desired
        self._min_interval = min_interval_s
        self._max_backoff = max_backoff_s
        self._wake = threading.Event()
        self._owner: dict[str, Any] | None = None
        self.passes = 0

    @property
    def selector(self) -> str:
        return f"spec.nodeName={self._node},spec.driver={self._driver}"

    def _owner_ref(self) -> dict[str, Any] | None:
        if self._owner is None:
            try:
                node = self._client.get(NODES, self._node)
            except NotFound:
                return None  # no Node object (yet): publish without an owner
            self._owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self._node,
                "uid": node["metadata"]["uid"],
                "controller": True,
            }
        return self._owner

    def sync(self) -> SliceChanges:
        """One reconcile pass; retries conflicts a few times.  Returns the applied plan."""
        for _ in range(5):
            existing = self._client.list(RESOURCESLICES, field_selector=self.selector).items
            todo = plan(existing, self._desired(self._owner_ref()))
            try:
                self._apply(todo)
            except (Conflict, AlreadyExists, NotFound) as e:
                log.info("slices changed under us (%s); re-planning", type(e).__name__)
                continue
            self.passes += 1
            if not todo.empty:
                log.info(
                    "published pool %s generation %d: %d created, %d updated, %d deleted",
                    self._node,
                    todo.generation,
                    len(todo.create),
                    len(todo.update),
                    len(todo.delete),
                )
            return todo
        raise Conflict(f"could not publish slices for {self._node}: they keep changing")

    def _apply(self, todo: SliceChanges) -> None:
        for s in todo.create:
            self._client.create(RESOURCESLICES, s)
        for s in todo.update:
            self._client.replace(RESOURCESLICES, s)
        for s in todo.delete:
            meta = s["metadata"]
            self._client.delete(RESOURCESLICES, meta["name"], uid=meta.get("uid"))

    def trigger(self) -> None:
        """Ask for a pass soon (e.g. the inventory changed)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Reconcile until ``stop`` is set: when triggered (``watch``, run on a thread of its
        own, triggers after changes to our slices), or every 30 s."""
        backoff = 0.5
        while not stop.is_set():
            self._wake.clear()
            started = time.monotonic()
            try:
                self.sync()
                self._on_api("")
                backoff = 0.5
            except Exception as e:  # never let the thread die: the slices must come back
                if isinstance(e, KubeError):
                    self._on_api(str(e))
                    log.warning("publishing slices failed (%s); retrying in %.1fs", e, backoff)
                else:
                    log.exception(
                        "publishing slices failed unexpectedly; retrying in %.1fs", backoff
                    )
                stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self._wake.wait(30.0)
            elapsed = time.monotonic() - started
            if elapsed < self._min_interval:
                stop.wait(self._min_interval - elapsed)

    def watch(self, stop: threading.Event) -> None:
        """Wake ``run`` whenever our slices change, until ``stop`` is set (a thread of its
        own: the daemon starts both guarded).  The watch is an ``Informer`` on our selector:
        gpudra's one list-and-watch loop."""
        Informer(
            self._client,
            RESOURCESLICES,
            field_selector=self.selector,
            on_change=self.trigger,
            watch_timeout_s=30,
        ).run(stop)
