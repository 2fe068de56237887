"""A TCP proxy in front of the API server that can stop answering: for one client (the node
daemon), the API server hangs, while everything else (the kubelet, the tests) talks to it
directly.  Pass-through bytes, so TLS and client certificates work unchanged."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml


class HangingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._hang = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.hung_connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def kubeconfig(self, original: Path, out: Path) -> Path:
        """``original`` with its server pointed at this proxy."""
        doc = yaml.safe_load(original.read_text())
        for c in doc["clusters"]:
            c["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        out.write_text(yaml.safe_dump(doc))
        return out

    @contextmanager
    def hanging(self) -> Iterator[None]:
        """New connections are accepted and never answered; open ones are cut."""
        self._hang.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._open.clear()
        try:
            yield
        finally:
            self._hang.clear()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._hang.is_set():
                self.hung_connections += 1
                with self._lock:
                    self._open.append(conn)  # kept open, never answered
                continue
            try:
                up = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            with self._lock:
                self._open += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
