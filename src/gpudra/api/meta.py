"""``metadata``: the identity every object carries (name, namespace, uid, labels, versions).

Absent fields read as the API's zero values (``""``, ``{}``), so callers never test for None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

# A raw API object, two ways (as kopf's ``RawBody``/``Body``): ``RawObject`` is the JSON the
# API server sent, a dict the holder owns and may change (what the ``kube`` client returns
# and takes); ``Object`` is the same object read-only, what the accessors here and the pure
# decisions take (a ``RawObject`` is one).
RawObject = dict[str, Any]
Object = Mapping[str, Any]


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    resourceVersion: str
    deletionTimestamp: str
    generateName: str


def metadata(obj: Object) -> ObjectMeta:
    meta: ObjectMeta = obj.get("metadata") or {}
    return meta


def name_of(obj: Object) -> str:
    return str(metadata(obj).get("name") or "")


def namespace_of(obj: Object) -> str:
    return str(metadata(obj).get("namespace") or "")


def uid_of(obj: Object) -> str:
    return str(metadata(obj).get("uid") or "")


def labels_of(obj: Object) -> dict[str, str]:
    return metadata(obj).get("labels") or {}


def resource_version_of(obj: Object) -> str:
    """``metadata.resourceVersion`` of an object or a list ("" when absent)."""
    return str(metadata(obj).get("resourceVersion") or "")


def is_deleting(obj: Object) -> bool:
    """Deletion has started (``metadata.deletionTimestamp`` is set)."""
    return bool(metadata(obj).get("deletionTimestamp"))


def namespaced_name(obj: Object) -> tuple[str, str]:
    """(namespace, name): the key of a namespaced object."""
    return namespace_of(obj), name_of(obj)
