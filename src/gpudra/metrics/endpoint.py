"""A daemon's HTTP endpoint: Prometheus ``/metrics`` plus health routes.

prometheus_client's own server answers every path with the metrics, so a probe of
``/healthz`` there would always pass.  This one serves ``/metrics`` from the registry and
each extra route from a callable returning (ok, text): 200 when ok, 503 otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Route = Callable[[], tuple[bool, str]]


def serve(
    registry: CollectorRegistry, port: int, addr: str, routes: Mapping[str, Route]
) -> ThreadingHTTPServer:
    """Start serving on a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in routes:
                try:
                    ok, text = routes[path]()
                except Exception as e:  # a broken check is a failed check, never a 500 loop
                    log.exception("health route %s failed", path)
                    ok, text = False, f"health check failed: {e}\n"
                self._send(200 if ok else 503, text.encode(), "text/plain; charset=utf-8")
            else:
                known = ", ".join(["/metrics", *routes])
                self._send(404, f"no such path {path}; serving {known}\n".encode(), "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
