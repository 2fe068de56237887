"""Readiness probes for the local control plane: poll until healthy, fail with the log tail.

Health endpoints are read with urllib on 127.0.0.1 with proxies disabled; kcm, the scheduler
and kwok serve self-signed or plain HTTP, and only the answer ``ok`` matters.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gpudra.kube import KubeError
from gpudra_testkit.localcluster.process import Component

log = logging.getLogger(__name__)

_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
)


class ClusterStartError(RuntimeError):
    """A component exited or did not become ready; the message ends with its log tail."""

    def __init__(self, component: Component, problem: str) -> None:
        self.component = component.name
        self.log_tail = component.log_tail()
        super().__init__(
            f"{component.name}: {problem} (log: {component.log_path})\n"
            f"--- last lines of {component.log_path.name} ---\n{self.log_tail}"
        )


LISTEN_PORT_FLOOR = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_low(path: Path = EPHEMERAL_RANGE) -> int:
    """The first port the kernel hands to outgoing connections (32768 if unknown)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, chosen below the kernel's
    ephemeral range.  A port from that range (what binding port 0 returns) can be taken by any
    outgoing connection, the apiserver's to etcd for example, between this choice and the
    moment a later component binds it; that made a cluster start fail with "address already
    in use".  Outgoing connections never use ports below the range."""
    high = ephemeral_low() - 1
    if high - LISTEN_PORT_FLOOR >= 1000:
        for _ in range(200):
            port = LISTEN_PORT_FLOOR + secrets.randbelow(high - LISTEN_PORT_FLOOR + 1)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no room below: any port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, *, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> str:
    """GET ``url`` and return the body.  Without ``context`` TLS is not verified (a local
    health endpoint with a self-signed certificate)."""
    opener = _OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    with opener.open(url, timeout=timeout) as response:
        return bytes(response.read()).decode("utf-8", "replace")


def client_tls(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Verify the server against ``ca`` and authenticate with a client certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def body_is_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    return lambda: http_get(url, context=context).strip() == "ok"


def etcd_healthy(url: str) -> Callable[[], bool]:
    return lambda: json.loads(http_get(url + "/health")).get("health") == "true"


def wait_ready(
    component: Component, check: Callable[[], bool], *, deadline: float, what: str
) -> None:
    """Poll ``check`` until it returns True; raise `ClusterStartError` if the component exits
    first or ``deadline`` (a ``time.monotonic()`` value) passes."""
    last = "no answer yet"
    delay = 0.05
    began = time.monotonic()
    while True:
        code = component.exit_code()
        if code is not None:
            raise ClusterStartError(component, f"exited with status {code} before {what}")
        try:
            if check():
                log.debug("%s: %s after %.2fs", component.name, what, time.monotonic() - began)
                return
            last = "not ready"
        except (OSError, urllib.error.URLError, ValueError, KubeError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise ClusterStartError(component, f"{what} not reached in time; last check: {last}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
