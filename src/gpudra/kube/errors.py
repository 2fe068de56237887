"""Typed errors of the Kubernetes API edge.

Callers decide what to do (retry, re-read and re-apply, report, give up) by the type of the
error, never by parsing messages or status codes; ``retryable`` is a property of the type.
`translate` is the one place that turns the client library's ``ApiException`` (or a transport
failure) into these, always used as ``raise translate(e) from e``.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from gpudra.common.errors import GpudraError


class KubeError(GpudraError):
    """Base of every API error.  ``status`` is the HTTP status (0 when none was received)."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.details: dict[str, Any] = details or {}
        # seconds the server asked us to wait (Retry-After, details.retryAfterSeconds)
        self.retry_after = retry_after


class BadRequest(KubeError):
    """400: the request itself is malformed (e.g. a bad selector or patch)."""


class Unauthorized(KubeError):
    """401: no valid credentials."""


class Forbidden(KubeError):
    """403: authenticated, but RBAC (or an admission webhook) refuses the request."""


class NotFound(KubeError):
    """404: the object (or the resource type, or the namespace) does not exist."""


class Conflict(KubeError):
    """409: optimistic-concurrency conflict (stale resourceVersion or failed precondition).

    Re-read the object and try again; retrying the same request cannot succeed, hence not
    ``retryable``."""


class AlreadyExists(KubeError):
    """409 with reason AlreadyExists: a create found an object with that name."""


class Gone(KubeError):
    """410: the resourceVersion of a watch or list continuation is too old; re-list."""


class Invalid(KubeError):
    """422: the API server validated the object and rejected it; ``message`` says why."""

    @property
    def causes(self) -> list[dict[str, Any]]:
        """The per-field causes the API server reported (``field``, ``message``, ``reason``)."""
        causes = self.details.get("causes", [])
        return causes if isinstance(causes, list) else []


class TooManyRequests(KubeError):
    """429: throttled (priority and fairness, or eviction budgets); retry after a pause."""

    retryable = True


class ServerError(KubeError):
    """5xx, or a timeout reported by the server: the server failed, trying again may help."""

    retryable = True


class ConnectionFailed(KubeError):
    """The API server could not be reached (refused, reset, TLS failure, client timeout)."""

    retryable = True


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def _seconds(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None  # an HTTP date or garbage: fall back to our own back-off
    return value if value >= 0 else None


def error_for_status(
    status: int,
    body: dict[str, Any] | None,
    fallback: str = "",
    retry_after_header: str | None = None,
) -> KubeError:
    """Build the typed error for an HTTP status and a ``Status`` object (may be None); the
    wait the server asked for (``details.retryAfterSeconds`` or the ``Retry-After`` header)
    becomes ``retry_after``."""
    body = body or {}
    message = str(body.get("message") or fallback or f"HTTP {status}")
    reason = str(body.get("reason") or "")
    details = body.get("details")
    kw: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "details": details if isinstance(details, dict) else None,
    }
    from_body = kw["details"].get("retryAfterSeconds") if kw["details"] else None
    kw["retry_after"] = _seconds(from_body) if from_body else _seconds(retry_after_header)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(message, **kw)
    if status == 429:
        return TooManyRequests(message, **kw)
    if status >= 500 or reason in ("Timeout", "ServerTimeout"):
        return ServerError(message, **kw)
    cls = _BY_STATUS.get(status, KubeError)
    if status == 0:
        cls = ConnectionFailed
    return cls(message, **kw)


def _status_body(e: ApiException) -> dict[str, Any] | None:
    raw = e.body
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"message": raw.strip()}
    return parsed if isinstance(parsed, dict) else None


def translate(e: BaseException) -> KubeError:
    """Map an ``ApiException`` or a urllib3 transport error to a `KubeError` subclass.

    Anything else becomes a plain `KubeError` carrying ``str(e)``; use ``raise ... from e``.
    """
    if isinstance(e, KubeError):
        return e
    if isinstance(e, ApiException):
        status = int(e.status or 0)
        header = e.headers.get("Retry-After") if e.headers else None
        return error_for_status(
            status, _status_body(e), fallback=str(e.reason or ""), retry_after_header=header
        )
    if isinstance(e, urllib3.exceptions.HTTPError | OSError):
        return ConnectionFailed(f"{type(e).__name__}: {e}")
    return KubeError(f"{type(e).__name__}: {e}")
