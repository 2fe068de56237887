"""`KubeClient`: generic object operations on plain JSON dicts, addressed by `Resource`.

get/list/create/replace/patch (merge, JSON, strategic, server-side apply)/patch_status/delete
(with preconditions)/watch, plus the two discovery calls tests and the CLI need.  The HTTP side
(authentication, raw requests, error translation) is `gpudra.kube.transport.Transport`; see its
docstring for why the generated model classes are not used.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from gpudra.api.meta import RawObject, resource_version_of
from gpudra.kube.errors import KubeError
from gpudra.kube.objects import ObjectList, PatchType, WatchEvent, decode_watch_line
from gpudra.kube.resources import Resource
from gpudra.kube.transport import DEFAULT_TIMEOUT, Transport


class KubeClient:
    """A thin, typed client for one API server.  Thread-safe."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, *, context: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> KubeClient:
        """A client for the cluster (and context) of a kubeconfig file."""
        return cls(Transport.from_kubeconfig(path, context=context, timeout=timeout))

    @classmethod
    def in_cluster(cls, *, timeout: float = DEFAULT_TIMEOUT) -> KubeClient:
        """A client from the pod's service-account token and the KUBERNETES_SERVICE_* env."""
        return cls(Transport.in_cluster(timeout=timeout))

    @property
    def host(self) -> str:
        """The API server URL, e.g. ``https://127.0.0.1:6443``."""
        return self.transport.host

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        """GET a non-JSON endpoint such as ``/readyz`` or ``/livez?verbose``."""
        return self.transport.get_text(path, timeout=timeout)

    # -- objects -------------------------------------------------------------------------------

    def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> RawObject:
        """One object; ``timeout`` (seconds) bounds this call instead of the client's default."""
        return self.transport.request_json(
            "GET", res.path(namespace=namespace, name=name), timeout=timeout
        )

    def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """All objects matching the selectors (following ``continue`` pages)."""
        items: list[RawObject] = []
        rv = ""
        for page, page_rv in self.list_pages(
            res,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
        ):
            items.extend(page)
            rv = page_rv
        return ObjectList(items, rv)

    def list_pages(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[tuple[builtins.list[RawObject], str]]:
        """The list one page at a time, with the list's resourceVersion (the same for every
        page of one list), so a caller can cut each page down before the next one arrives."""
        token: str | None = None
        while True:
            query = {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": page_size,
                "continue": token,
            }
            page = self.transport.request_json("GET", res.path(namespace=namespace), query=query)
            yield page.get("items") or [], resource_version_of(page)
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def create(self, res: Resource, obj: RawObject, *, namespace: str | None = None) -> RawObject:
        """Create ``obj``; ``namespace`` defaults to ``obj.metadata.namespace``."""
        ns = _namespace_of(res, obj, namespace)
        return self.transport.request_json("POST", res.path(namespace=ns), body=obj)

    def replace(
        self, res: Resource, obj: RawObject, *, namespace: str | None = None, subresource: str = ""
    ) -> RawObject:
        """PUT the whole object (its resourceVersion makes this an optimistic update)."""
        ns = _namespace_of(res, obj, namespace)
        name = str(obj.get("metadata", {}).get("name", ""))
        path = res.path(namespace=ns, name=name, subresource=subresource)
        return self.transport.request_json("PUT", path, body=obj)

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
        """PATCH one object.  For `PatchType.APPLY` (server-side apply) ``field_manager`` is
        required and ``force`` takes over fields owned by other managers."""
        query: dict[str, str | int | bool | None] = {"fieldManager": field_manager}
        if patch_type is PatchType.APPLY:
            if not field_manager:
                raise ValueError("server-side apply needs a field_manager")
            query["force"] = force
        elif patch_type is PatchType.JSON and not isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations")
        path = res.path(namespace=namespace, name=name, subresource=subresource)
        return self.transport.request_json(
            "PATCH", path, query=query, body=patch, content_type=patch_type.value
        )

    def apply(
        self,
        res: Resource,
        obj: RawObject,
        *,
        field_manager: str,
        force: bool = True,
        namespace: str | None = None,
        subresource: str = "",
    ) -> RawObject:
        """Server-side apply ``obj`` (which must carry apiVersion, kind and metadata.name)."""
        ns = _namespace_of(res, obj, namespace)
        name = str(obj.get("metadata", {}).get("name", ""))
        return self.patch(
            res,
            name,
            obj,
            namespace=ns,
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=force,
            subresource=subresource,
        )

    def patch_status(
        self,
        res: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
    ) -> RawObject:
        """PATCH the ``status`` subresource (e.g. a ResourceClaim's allocation, a Pod's phase)."""
        return self.patch(
            res,
            name,
            patch,
            namespace=namespace,
            patch_type=patch_type,
            field_manager=field_manager,
            force=force,
            subresource="status",
        )

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
        """Delete one object, only if it still has ``uid``/``resource_version`` when given.

        Returns the server's answer: the object (now terminating) or a ``Status``."""
        options: RawObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if any(preconditions.values()):
            options["preconditions"] = {k: v for k, v in preconditions.items() if v}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        path = res.path(namespace=namespace, name=name)
        return self.transport.request_json("DELETE", path, body=options)

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
        """Stream events until the server ends the watch (after ``timeout_seconds``).

        Raises `gpudra.kube.errors.Gone` when ``resource_version`` is too old: re-list then."""
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": allow_bookmarks or None,
        }
        # The server closes the stream after timeoutSeconds; the read timeout only catches a
        # connection that went silent without closing.
        timeout = (self.transport.timeout, timeout_seconds + self.transport.timeout)
        for line in self.transport.stream_lines(
            res.path(namespace=namespace), query=query, timeout=timeout
        ):
            event = decode_watch_line(line)
            if event is not None:
                yield event

    # -- discovery -----------------------------------------------------------------------------

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server, from ``/version`` (``"37+"`` reads as 37)."""
        info = self.transport.request_json("GET", "/version")
        try:
            major = int(re.sub(r"\D", "", str(info["major"])))
            minor = int(re.sub(r"\D", "", str(info["minor"])))
        except (KeyError, ValueError) as e:
            raise KubeError(f"unexpected /version answer: {info}") from e
        return major, minor

    def discover_group(self, group_version: str) -> builtins.list[str]:
        """Resource names the server serves for ``group_version`` (``v1`` or ``g/v``),
        subresources included (``resourceclaims/status``).  `NotFound` if it is not served."""
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        answer = self.transport.request_json("GET", path)
        return sorted(str(r["name"]) for r in answer.get("resources") or [] if "name" in r)


def _namespace_of(res: Resource, obj: RawObject, namespace: str | None) -> str | None:
    if not res.namespaced:
        return None
    ns = namespace or (obj.get("metadata") or {}).get("namespace")
    if not ns:
        raise ValueError(f"{res.plural} is namespaced: set metadata.namespace or namespace=")
    return str(ns)
