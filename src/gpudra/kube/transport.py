"""`Transport`: one authenticated HTTP connection pool to an API server, bytes in, JSON out.

Why raw calls instead of the generated ``*Api`` classes: the ``kubernetes`` package's models are
generated for one Kubernetes minor and (from 37.x) validated by pydantic, so a server one minor
older or newer would lose or reject fields.  Here the library only provides configuration,
authentication and the connection pool; requests go through ``ApiClient.call_api`` and bodies are
``json.loads``-ed.  Every failure leaves this module as a `gpudra.kube.errors.KubeError`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from gpudra.api.meta import RawObject
from gpudra.kube.errors import KubeError, error_for_status, translate
from gpudra.kube.objects import iter_lines

DEFAULT_TIMEOUT = 30.0
Query = Mapping[str, str | int | bool | None]
Timeout = float | tuple[float, float]


# urllib3's default (3 retries, reads included) turns one 30 s read timeout into 120 s: a
# request to a hung API server must fail within its own timeout, so a read is never retried
# here (callers retry with their own back-off).  A refused connection fails at once, and is
# tried once more.
NO_READ_RETRIES = urllib3.util.Retry(total=1, connect=1, read=0, status=0, redirect=0, other=0)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Transport:
    """Wraps a ``kubernetes.client.ApiClient``; thread-safe (one urllib3 pool)."""

    def __init__(self, api_client: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._api = api_client
        self.timeout = timeout

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, *, context: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Transport:
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(
                config_file=str(path),
                context=context,
                client_configuration=config,
                persist_config=False,
            )
        except (OSError, kubernetes.config.ConfigException) as e:
            raise KubeError(f"cannot load kubeconfig {path}: {e}") from e
        if _is_loopback(str(config.host)):
            # An HTTP(S)_PROXY from the environment can never reach this machine's loopback.
            config.proxy = None
        config.retries = NO_READ_RETRIES
        return cls(kubernetes.client.ApiClient(config), timeout=timeout)

    @classmethod
    def in_cluster(cls, *, timeout: float = DEFAULT_TIMEOUT) -> Transport:
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)
        except kubernetes.config.ConfigException as e:
            raise KubeError(f"not running in a cluster: {e}") from e
        config.retries = NO_READ_RETRIES
        return cls(kubernetes.client.ApiClient(config), timeout=timeout)

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    def close(self) -> None:
        self._api.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
    ) -> Any:
        """Send one request; return the open ``RESTResponse`` (status checked, body unread)."""
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                *request, _request_timeout=timeout if timeout is not None else self.timeout
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e) from e
        status = int(response.status)
        if 200 <= status <= 299:
            return response
        data = self._read(response)
        try:
            status_obj = json.loads(data)
        except ValueError:
            status_obj = {"message": data.decode("utf-8", "replace").strip()}
        if not isinstance(status_obj, dict):
            status_obj = None
        raise error_for_status(
            status,
            status_obj,
            fallback=str(response.reason or ""),
            retry_after_header=response.getheader("Retry-After"),
        )

    def request_json(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Timeout | None = None,
    ) -> RawObject:
        """One request whose response body is a JSON object."""
        data = self._read(
            self.send(
                method, path, query=query, body=body, content_type=content_type, timeout=timeout
            )
        )
        try:
            decoded = json.loads(data) if data else {}
        except ValueError as e:
            raise KubeError(f"{method} {path}: response is not JSON: {data[:200]!r}") from e
        if not isinstance(decoded, dict):
            raise KubeError(f"{method} {path}: expected a JSON object, got {type(decoded)}")
        return decoded

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        """GET a non-JSON endpoint such as ``/readyz``."""
        return self._read(self.send("GET", path, timeout=timeout)).decode("utf-8", "replace")

    def stream_lines(
        self, path: str, *, query: Query | None = None, timeout: Timeout | None = None
    ) -> Iterator[bytes]:
        """GET a streaming endpoint (a watch) and yield its lines as they arrive."""
        raw = self.send("GET", path, query=query, timeout=timeout).response
        try:
            yield from iter_lines(raw.stream(amt=None, decode_content=True))
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e) from e
        finally:
            # Close first: a stream abandoned mid-way must not go back to the pool unread.
            raw.close()
            raw.release_conn()

    @staticmethod
    def _read(response: Any) -> bytes:
        try:
            return bytes(response.read() or b"")
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e) from e
