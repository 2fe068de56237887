"""Resource descriptors: how to address one kind of object in the REST API.

The client works on plain JSON dicts, so a kind is named by a small frozen `Resource` (group,
version, plural, scope, kind) instead of a generated model class; that keeps the client working
against API servers newer or older than the ``kubernetes`` package.  The predefined descriptors
are the ones gpudra and its tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One REST resource.  ``group`` is ``""`` for the core API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` field of objects of this resource (``v1``, ``resource.k8s.io/v1``)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        """``/api/v1`` for the core group, ``/apis/<group>/<version>`` otherwise."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        """The URL path of the collection (no name) or of one object (and its subresource)."""
        if self.namespaced and namespace is None and name is not None:
            raise ValueError(f"{self.plural} is namespaced: a namespace is required")
        if not self.namespaced and namespace is not None:
            raise ValueError(f"{self.plural} is cluster-scoped: no namespace allowed")
        parts = [self.group_version_path]
        if namespace is not None:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return "/".join(parts)


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)

RESOURCE_GROUP = "resource.k8s.io"
RESOURCESLICES = Resource(RESOURCE_GROUP, "v1", "resourceslices", "ResourceSlice", False)
RESOURCECLAIMS = Resource(RESOURCE_GROUP, "v1", "resourceclaims", "ResourceClaim", True)
RESOURCECLAIMTEMPLATES = Resource(
    RESOURCE_GROUP, "v1", "resourceclaimtemplates", "ResourceClaimTemplate", True
)
DEVICECLASSES = Resource(RESOURCE_GROUP, "v1", "deviceclasses", "DeviceClass", False)
