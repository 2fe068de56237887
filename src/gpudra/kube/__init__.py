"""The Kubernetes API edge: the only package that imports ``kubernetes``.

Everything above it talks to the API server through `KubeClient` on plain JSON objects and sees
only `gpudra.kube.errors` types when something fails.
"""

from gpudra.kube import resources
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
)
from gpudra.kube.objects import ObjectList, PatchType, WatchEvent
from gpudra.kube.resources import Resource

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeClient",
    "KubeError",
    "NotFound",
    "ObjectList",
    "PatchType",
    "Resource",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "WatchEvent",
    "resources",
]
