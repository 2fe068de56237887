"""`FakeKubeClient`: a recording stand-in for `gpudra.kube.KubeClient`, for shell unit tests.

It fakes gpudra's own client, not Kubernetes: objects live in a dict per `Resource`, reads return
what the test seeded (or what earlier writes stored), errors are the `gpudra.kube.errors` types
and happen only where the test scripts them, and every call is recorded in order, so a test
asserts on the writes a shell made (as sample-controller's ``controller_test.go`` does with the
fake clientset's actions).  Usage::

    fake = FakeKubeClient()
    fake.seed(RESOURCECLAIMS, claim)                        # what reads will return
    fake.fail_next("patch", RESOURCECLAIMS, Conflict("stale"), subresource="status")
    Reconciler(fake, metrics=...).run_pass()
    assert [str(w) for w in fake.writes] == [
        "patch resourceclaims/status ns/c -> Conflict",     # the attempt, and what it raised
        "create events ns/p.",                               # generateName as sent
    ]
    assert fake.writes[0].body["metadata"]["resourceVersion"] == "7"

The whole API:

* ``seed(res, *objs)``: store copies of ``objs`` (a ``resourceVersion`` is added if missing).
* ``fail_next(verb, res, error, *, name=None, subresource=None)``: the next matching call raises
  ``error`` instead of doing anything (queued; each script fires once).  ``verb`` is one of
  ``get list watch create replace patch delete server_version`` (``list`` covers
  ``list_pages``; ``patch`` covers ``patch_status`` and ``apply``, which go through ``patch``).
* ``queue_watch(res, *events)``: what the next ``watch`` of ``res`` yields before it ends.
* ``actions``: every call as an `Action` (reads too); ``writes``: the create/replace/patch/delete
  ones, failed attempts included (``Action.error``).  ``actions.clear()`` forgets them.
* ``stored(res, name, namespace=None)`` / ``objects(res)``: what the store holds now.
* ``version``: what ``server_version()`` answers.

What it does with writes, and deliberately no more: create stores (``AlreadyExists`` if the name
is taken, a name made from ``generateName``, a ``uid`` added); replace stores (``NotFound`` if
absent; with ``subresource="status"`` only ``status`` is taken); patch applies a merge patch
(RFC 7386; strategic and apply patches are treated as merge patches, so their lists replace) or
a JSON patch (``test``/``add``/``remove``/``replace``; a failed ``test`` or a missing path raises
`Invalid`, as the API server answers 422), keeping only ``status`` for the status subresource;
delete removes (``NotFound`` if absent).  Each stored write bumps the object's resourceVersion
from one counter.  It never checks resourceVersions, uids or preconditions: script the
`Conflict` where a test needs one.  Selectors are equality only (``a=b``, ``a!=b``, and for
labels ``key`` / ``!key``).  Watch events are not applied to the store, and a watch with nothing
queued waits ``watch_idle_s`` and ends, so a shell's watch thread cannot spin.
"""

from __future__ import annotations

import builtins
import copy
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gpudra.api.meta import RawObject
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import AlreadyExists, Invalid, KubeError, NotFound
from gpudra.kube.objects import PatchType, WatchEvent
from gpudra.kube.resources import Resource

WRITE_VERBS = frozenset({"create", "replace", "patch", "delete"})
_VERBS = WRITE_VERBS | {"get", "list", "watch", "server_version"}

_Key = tuple[str, str]  # (namespace or "", name)


@dataclass(eq=False)
class Action:
    """One call made on the fake, as the shell made it.

    ``body`` is a deep copy of what was sent (the object, the patch, or the DeleteOptions);
    ``error`` is the `KubeError` the call raised, if any (scripted, or e.g. `NotFound`)."""

    verb: str
    resource: Resource | None
    name: str = ""
    namespace: str | None = None
    body: Any = None
    subresource: str = ""
    patch_type: PatchType | None = None
    error: KubeError | None = None

    def __str__(self) -> str:
        """``verb plural[/subresource] [namespace/]name[ -> ErrorType]``, for readable asserts."""
        what = self.resource.plural if self.resource else ""
        if self.subresource:
            what += f"/{self.subresource}"
        target = f"{self.namespace}/{self.name}" if self.namespace else self.name
        text = " ".join(part for part in (self.verb, what, target) if part)
        return f"{text} -> {type(self.error).__name__}" if self.error else text


@dataclass(frozen=True, eq=False)
class _Script:
    verb: str
    resource: Resource | None
    name: str | None
    subresource: str | None
    error: KubeError

    def matches(self, a: Action) -> bool:
        return (
            self.verb == a.verb
            and self.resource == a.resource
            and self.name in (None, a.name)
            and self.subresource in (None, a.subresource)
        )


class FakeKubeClient(KubeClient):
    """See the module docstring.  Thread-safe; a `KubeClient` for the type checker."""

    def __init__(self, *, version: tuple[int, int] = (1, 34), watch_idle_s: float = 0.05) -> None:
        # no super().__init__: there is no transport, and every method that would use one is
        # overridden below
        self.version = version
        self.watch_idle_s = watch_idle_s
        self.actions: builtins.list[Action] = []
        self._lock = threading.RLock()
        self._store: dict[Resource, dict[_Key, RawObject]] = defaultdict(dict)
        self._scripts: builtins.list[_Script] = []
        self._watches: dict[Resource, builtins.list[WatchEvent]] = defaultdict(builtins.list)
        self._counter = 0

    # --- the test's side ---------------------------------------------------------------------

    def seed(self, res: Resource, *objs: RawObject) -> None:
        """Store copies of ``objs`` (each needs metadata.name, and a namespace if namespaced)."""
        with self._lock:
            for obj in objs:
                stored = copy.deepcopy(obj)
                meta = stored.setdefault("metadata", {})
                if not meta.get("resourceVersion"):
                    meta["resourceVersion"] = self._next_rv()
                self._store[res][self._key(res, stored)] = stored

    def fail_next(
        self,
        verb: str,
        res: Resource | None,
        error: KubeError,
        *,
        name: str | None = None,
        subresource: str | None = None,
    ) -> None:
        """The next ``verb`` call on ``res`` (and ``name``/``subresource`` when given) raises
        ``error``.  ``res`` is None only for ``server_version``."""
        if verb not in _VERBS:
            raise ValueError(f"unknown verb {verb!r}; one of {sorted(_VERBS)}")
        with self._lock:
            self._scripts.append(_Script(verb, res, name, subresource, error))

    def queue_watch(self, res: Resource, *events: WatchEvent) -> None:
        """Events the next ``watch`` of ``res`` yields, in order, before it ends."""
        with self._lock:
            self._watches[res].extend(events)

    @property
    def writes(self) -> builtins.list[Action]:
        """The create/replace/patch/delete calls, in order, failed attempts included."""
        with self._lock:
            return [a for a in self.actions if a.verb in WRITE_VERBS]

    def stored(self, res: Resource, name: str, namespace: str | None = None) -> RawObject:
        """A copy of the stored object; KeyError if there is none."""
        with self._lock:
            try:
                return copy.deepcopy(self._store[res][(namespace or "", name)])
            except KeyError:
                raise KeyError(f"no {res.plural} {namespace or ''}/{name} stored") from None

    def objects(self, res: Resource) -> builtins.list[RawObject]:
        """Copies of every stored object of ``res``, in the order they were first stored."""
        with self._lock:
            return copy.deepcopy(builtins.list(self._store[res].values()))

    # --- KubeClient ----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "https://fake-kube.invalid"

    def close(self) -> None:
        pass

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        raise NotImplementedError(f"FakeKubeClient does not fake GET {path}")

    def discover_group(self, group_version: str) -> builtins.list[str]:
        raise NotImplementedError(f"FakeKubeClient does not fake discovery of {group_version}")

    def server_version(self) -> tuple[int, int]:
        with self._call(Action("server_version", None)):
            return self.version

    def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> RawObject:
        with self._call(Action("get", res, name, namespace)):
            return copy.deepcopy(self._existing(res, namespace, name))

    def list_pages(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[tuple[builtins.list[RawObject], str]]:
        # one page, whatever page_size says; the base class's list() goes through here
        with self._call(Action("list", res, namespace=namespace)):
            items = [
                copy.deepcopy(o)
                for (ns, _), o in self._store[res].items()
                if namespace in (None, ns)
                and _labels_match(o, label_selector)
                and _fields_match(o, field_selector)
            ]
            rv = str(self._counter)
        yield items, rv

    def watch(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 60,
        allow_bookmarks: bool = False,
    ) -> Iterator[WatchEvent]:
        with self._call(Action("watch", res, namespace=namespace)):
            events, self._watches[res] = self._watches[res], []
        if not events:
            time.sleep(self.watch_idle_s)
        yield from events

    def create(self, res: Resource, obj: RawObject, *, namespace: str | None = None) -> RawObject:
        meta = obj.get("metadata") or {}
        ns = (namespace or meta.get("namespace")) if res.namespaced else None
        sent = str(meta.get("name") or meta.get("generateName") or "")
        with self._call(Action("create", res, sent, ns, copy.deepcopy(obj))):
            stored = copy.deepcopy(obj)
            new = stored.setdefault("metadata", {})
            if ns:
                new["namespace"] = ns
            if not new.get("name"):
                if not new.get("generateName"):
                    raise Invalid(f"{res.plural}: name or generateName is required", status=422)
                new["name"] = f"{new['generateName']}{self._counter + 1}"
            key = self._key(res, stored)
            if key in self._store[res]:
                message = f'{res.plural} "{new["name"]}" already exists'
                raise AlreadyExists(message, status=409, reason="AlreadyExists")
            new.setdefault("uid", f"uid-{self._counter + 1}")
            return self._put(res, key, stored)

    def replace(
        self, res: Resource, obj: RawObject, *, namespace: str | None = None, subresource: str = ""
    ) -> RawObject:
        meta = obj.get("metadata") or {}
        ns = (namespace or meta.get("namespace")) if res.namespaced else None
        name = str(meta.get("name") or "")
        with self._call(Action("replace", res, name, ns, copy.deepcopy(obj), subresource)):
            old = self._existing(res, ns, name)
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = copy.deepcopy(obj.get("status"))
            else:
                new = copy.deepcopy(obj)
                new.setdefault("metadata", {}).setdefault("uid", old["metadata"].get("uid"))
            return self._put(res, (ns or "", name), new)

    def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str = "",
    ) -> RawObject:
        # the same argument checks as the real client, so the fake accepts no more than it
        if patch_type is PatchType.APPLY and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        if patch_type is PatchType.JSON and not isinstance(patch, builtins.list):
            raise ValueError("a JSON patch is a list of operations")
        sent = Action("patch", res, name, namespace, copy.deepcopy(patch), subresource, patch_type)
        with self._call(sent):
            old = self._existing(res, namespace, name)
            if patch_type is PatchType.JSON:
                new = _json_patch(old, patch)
                if subresource == "status":
                    new = {**copy.deepcopy(old), "status": new.get("status")}
            else:
                if subresource == "status":
                    patch = {"status": patch.get("status")} if "status" in patch else {}
                new = _merge_patch(old, patch)
            return self._put(res, (namespace or "", name), new)

    def delete(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> RawObject:
        # the body is the DeleteOptions the real client would send
        options: RawObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if any(preconditions.values()):
            options["preconditions"] = {k: v for k, v in preconditions.items() if v}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        with self._call(Action("delete", res, name, namespace, options)):
            self._existing(res, namespace, name)
            return self._store[res].pop((namespace or "", name))

    # --- internals -----------------------------------------------------------------------------

    @contextmanager
    def _call(self, action: Action) -> Iterator[None]:
        """Record the call; raise a scripted error instead of running it; note what it raised."""
        with self._lock:
            self.actions.append(action)
            script = next((s for s in self._scripts if s.matches(action)), None)
            if script is not None:
                self._scripts.remove(script)
                action.error = script.error
                raise script.error
            try:
                yield
            except KubeError as e:
                action.error = e
                raise

    def _next_rv(self) -> str:
        self._counter += 1
        return str(self._counter)

    def _key(self, res: Resource, obj: RawObject) -> _Key:
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise ValueError(f"a {res.kind} needs metadata.name")
        ns = str(meta.get("namespace") or "")
        if res.namespaced != bool(ns):
            raise ValueError(f"{res.plural} {'needs' if res.namespaced else 'has no'} a namespace")
        return ns, str(meta["name"])

    def _existing(self, res: Resource, namespace: str | None, name: str) -> RawObject:
        obj = self._store[res].get((namespace or "", name))
        if obj is None:
            raise NotFound(f'{res.plural} "{name}" not found', status=404, reason="NotFound")
        return obj

    def _put(self, res: Resource, key: _Key, obj: RawObject) -> RawObject:
        obj.setdefault("metadata", {})["resourceVersion"] = self._next_rv()
        self._store[res][key] = obj
        return copy.deepcopy(obj)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, None deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(obj: RawObject, ops: builtins.list[dict[str, Any]]) -> RawObject:
    """RFC 6902 ``test``/``add``/``remove``/``replace`` on a copy; `Invalid` when one fails."""
    doc = copy.deepcopy(obj)
    for op in ops:
        kind, path = op.get("op"), str(op.get("path", ""))
        if kind not in ("test", "add", "remove", "replace"):
            raise ValueError(f"FakeKubeClient does not fake JSON patch op {kind!r}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        value = copy.deepcopy(op.get("value"))
        try:
            parent: Any = doc
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, builtins.list) else parent[part]
            index: Any = parts[-1]
            if isinstance(parent, builtins.list):
                index = len(parent) if index == "-" else int(index)
            if kind == "add" and isinstance(parent, builtins.list):
                parent.insert(index, value)
            elif kind == "add":
                parent[index] = value
            elif kind == "remove":
                del parent[index]
            elif kind == "test":
                if parent[index] != value:
                    raise Invalid(f"JSON patch test failed at {path}", status=422)
            else:  # replace: the target must exist
                _ = parent[index]
                parent[index] = value
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise Invalid(f"JSON patch {kind} failed at {path}: {e!r}", status=422) from e
    return doc


def _field(obj: RawObject, dotted: str) -> str | None:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)


def _terms(selector: str | None) -> builtins.list[tuple[str, str, str | None]]:
    """(key, op, value) per comma-separated term; op is ``=``, ``!=``, ``exists`` or ``!``."""
    terms: builtins.list[tuple[str, str, str | None]] = []
    for raw in (selector or "").split(","):
        term = raw.strip()
        if not term:
            continue
        if " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"FakeKubeClient supports equality selectors only, not {term!r}")
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif term.startswith("!"):
            terms.append((term[1:].strip(), "!", None))
        else:
            terms.append((term, "exists", None))
    return terms


def _check(actual: str | None, op: str, value: str | None) -> bool:
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    return (actual is not None) == (op == "exists")


def _labels_match(obj: RawObject, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(_check(labels.get(k), op, v) for k, op, v in _terms(selector))


def _fields_match(obj: RawObject, selector: str | None) -> bool:
    return all(_check(_field(obj, k), op, v) for k, op, v in _terms(selector))
