"""Watch-fed caches: list a resource once, then follow its watch.

An ``Informer`` keeps every object of one resource in memory (optionally transformed, e.g.
a pod cut down to the fields its reader needs): one LIST, then a WATCH from that list's
resourceVersion with bookmarks, resumed from the last resourceVersion seen when the server
ends it, and a fresh LIST only when the server says that version is gone (410) or the
stream broke.  A newer object never gives way to an older one (a write-through of our own
write may arrive before the watch event it causes).  ``on_change`` is told after every
change, so a reader can wake at once instead of polling (the slice publisher uses one for
nothing else: the one watch loop of gpudra).  A field selector narrows it to, e.g., one
node's slices.  No error ends ``run``: it backs off and lists again.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from gpudra.api.meta import RawObject
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import Gone, KubeError
from gpudra.kube.resources import Resource

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace ("" for cluster-scoped), name


def compact(value: Any) -> Any:
    """The same JSON value with its keys and short strings interned: thousands of cached
    objects repeat the same field names and values ("string", driver names, product names),
    and one shared copy each keeps a large cache small."""
    if isinstance(value, dict):
        return {sys.intern(k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= 64:
        return sys.intern(value)
    return value


def key_of(obj: RawObject) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _newer(a: RawObject, b: RawObject) -> bool:
    """Whether ``a`` is strictly newer than ``b`` (resourceVersions compared as numbers when
    both are: etcd revisions; otherwise any different one counts as newer)."""
    ra = str((a.get("metadata") or {}).get("resourceVersion") or "")
    rb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    if ra.isdigit() and rb.isdigit():
        return int(ra) > int(rb)
    return ra != rb


class Informer:
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        transform: Callable[[RawObject], RawObject] = lambda o: o,
        on_change: Callable[[], None] = lambda: None,
        field_selector: str | None = None,
        watch_timeout_s: int = 300,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._client = client
        self.resource = resource
        self._transform = transform
        self._on_change = on_change
        self._field_selector = field_selector
        self._watch_timeout = watch_timeout_s
        self._max_backoff = max_backoff_s
        self._lock = threading.Lock()
        self._store: dict[Key, RawObject] = {}
        self._rv = ""
        self.synced = threading.Event()
        self.lists = 0  # how often the resource was LISTed (1 in a healthy steady state)
        self.watches = 0

    # --- reading -------------------------------------------------------------------------

    def items(self) -> list[RawObject]:
        with self._lock:
            return list(self._store.values())

    def get(self, key: Key) -> RawObject | None:
        with self._lock:
            return self._store.get(key)

    def observe(self, obj: RawObject) -> None:
        """Take in an object we just wrote (the server's answer), ahead of its watch event."""
        self._put(self._transform(obj))

    # --- following the server ------------------------------------------------------------

    def _put(self, obj: RawObject) -> bool:
        k = key_of(obj)
        with self._lock:
            old = self._store.get(k)
            if old is not None and not _newer(obj, old):
                return False
            self._store[k] = obj
        return True

    def _relist(self) -> None:
        fresh: dict[Key, RawObject] = {}
        rv = ""
        pages = self._client.list_pages(self.resource, field_selector=self._field_selector)
        for page, page_rv in pages:  # cut down page by page
            fresh.update((key_of(o), self._transform(o)) for o in page)
            rv = page_rv
        self.lists += 1
        with self._lock:
            self._store, self._rv = fresh, rv
        self.synced.set()
        self._on_change()

    def _follow(self, stop: threading.Event) -> None:
        self.watches += 1
        for event in self._client.watch(
            self.resource,
            resource_version=self._rv,
            field_selector=self._field_selector,
            timeout_seconds=self._watch_timeout,
            allow_bookmarks=True,
        ):
            if stop.is_set():
                return
            obj = event.object
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if event.type == "BOOKMARK":
                self._rv = rv or self._rv
                continue
            changed = False
            if event.type in ("ADDED", "MODIFIED"):
                changed = self._put(self._transform(obj))
            elif event.type == "DELETED":
                with self._lock:
                    changed = self._store.pop(key_of(obj), None) is not None
            self._rv = rv or self._rv
            if changed:
                self._on_change()

    def run(self, stop: threading.Event) -> None:
        """List, then watch until ``stop``; never ends on an error (backs off, lists again)."""
        backoff = 0.5
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._follow(stop)  # ends when the server closes the watch: resume from rv
                backoff = 0.5
            except Gone:
                log.info("%s: watch resourceVersion too old; listing again", self.resource.plural)
                need_list = True
            except Exception as e:  # never ends: a typed failure, or one the client did not type
                typed = isinstance(e, KubeError | OSError | ValueError)
                log.log(
                    logging.WARNING if typed else logging.ERROR,
                    "%s: list/watch failed (%s); again in %.1fs",
                    self.resource.plural,
                    e,
                    backoff,
                    exc_info=not typed,
                )
                need_list = True
                stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
