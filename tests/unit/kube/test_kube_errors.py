"""Error translation: ApiException / Status bodies / transport errors -> typed KubeErrors."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from gpudra.kube import errors


def _status(code: int, reason: str, message: str, **details: object) -> str:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if details:
        body["details"] = details
    return json.dumps(body)


SCENARIOS = [
    pytest.param(400, "BadRequest", errors.BadRequest, False, id="bad-request"),
    pytest.param(401, "Unauthorized", errors.Unauthorized, False, id="unauthorized"),
    pytest.param(403, "Forbidden", errors.Forbidden, False, id="forbidden"),
    pytest.param(404, "NotFound", errors.NotFound, False, id="not-found"),
    pytest.param(409, "Conflict", errors.Conflict, False, id="conflict"),
    pytest.param(409, "AlreadyExists", errors.AlreadyExists, False, id="already-exists"),
    pytest.param(410, "Expired", errors.Gone, False, id="gone"),
    pytest.param(422, "Invalid", errors.Invalid, False, id="invalid"),
    pytest.param(429, "TooManyRequests", errors.TooManyRequests, True, id="throttled"),
    pytest.param(500, "InternalError", errors.ServerError, True, id="internal"),
    pytest.param(503, "ServiceUnavailable", errors.ServerError, True, id="unavailable"),
    pytest.param(504, "Timeout", errors.ServerError, True, id="timeout"),
    pytest.param(418, "Teapot", errors.KubeError, False, id="unknown-status"),
]


@pytest.mark.parametrize(("status", "reason", "expected", "retryable"), SCENARIOS)
def test_status_maps_to_type(
    status: int, reason: str, expected: type[errors.KubeError], retryable: bool
) -> None:
    e = ApiException(status=status, reason=reason, body=_status(status, reason, "the message"))
    err = errors.translate(e)
    assert type(err) is expected
    assert err.retryable is retryable
    assert err.status == status
    assert err.reason == reason
    assert err.message == "the message"


def test_invalid_carries_server_message_and_causes() -> None:
    causes = [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.x"}]
    body = _status(
        422,
        "Invalid",
        'ResourceSlice "s" is invalid: spec.x: Required value',
        name="s",
        kind="ResourceSlice",
        causes=causes,
    )
    err = errors.translate(ApiException(status=422, reason="Unprocessable Entity", body=body))
    assert isinstance(err, errors.Invalid)
    assert "spec.x: Required value" in str(err)
    assert err.causes == causes


def test_retry_after_from_details_or_header() -> None:
    body = _status(429, "TooManyRequests", "slow down", retryAfterSeconds=3)
    err = errors.translate(ApiException(status=429, body=body))
    assert isinstance(err, errors.TooManyRequests)
    assert err.retry_after == 3.0

    e = ApiException(status=429, body="")
    e.headers = {"Retry-After": "7"}
    err = errors.translate(e)
    assert isinstance(err, errors.TooManyRequests)
    assert err.retry_after == 7.0


def test_a_server_error_carries_its_retry_after_too() -> None:
    """A 503 with Retry-After (an overloaded or restarting server) used to lose it."""
    e = ApiException(status=503, body=_status(503, "ServiceUnavailable", "busy"))
    e.headers = {"Retry-After": "5"}
    err = errors.translate(e)
    assert isinstance(err, errors.ServerError) and err.retry_after == 5.0
    via_response = errors.error_for_status(500, None, retry_after_header="2")
    assert via_response.retry_after == 2.0
    assert errors.error_for_status(429, None, retry_after_header="Wed, 21 Oct").retry_after is None


def test_non_json_body_becomes_message() -> None:
    err = errors.translate(ApiException(status=500, reason="Oops", body="[-]etcd failed\n"))
    assert isinstance(err, errors.ServerError)
    assert err.message == "[-]etcd failed"


def test_no_body_uses_reason() -> None:
    err = errors.translate(ApiException(status=404, reason="Not Found"))
    assert isinstance(err, errors.NotFound)
    assert err.message == "Not Found"


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ApiException(status=0, reason="SSLError: bad cert"), id="ssl-status-0"),
        pytest.param(urllib3.exceptions.MaxRetryError(None, "/x"), id="max-retries"),  # type: ignore[arg-type]
        pytest.param(ConnectionRefusedError(111, "refused"), id="refused"),
    ],
)
def test_transport_failures_are_retryable(exc: BaseException) -> None:
    err = errors.translate(exc)
    assert isinstance(err, errors.ConnectionFailed)
    assert err.retryable


def test_raise_from_keeps_cause() -> None:
    original = ApiException(status=409, reason="Conflict", body=_status(409, "Conflict", "stale"))
    with pytest.raises(errors.Conflict) as info:
        try:
            raise original
        except ApiException as e:
            raise errors.translate(e) from e
    assert info.value.__cause__ is original


def test_already_exists_is_not_a_conflict() -> None:
    # A create that finds the name taken must not be retried as an optimistic-lock conflict.
    assert not issubclass(errors.AlreadyExists, errors.Conflict)
