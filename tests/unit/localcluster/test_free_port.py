"""Listening ports for the local control plane stay out of the kernel's ephemeral range, so no
outgoing connection can take one before its component binds it."""

from __future__ import annotations

import socket
from pathlib import Path

from gpudra_testkit.localcluster import probes


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    low = probes.ephemeral_low()
    ports = {probes.free_port() for _ in range(50)}
    for port in ports:
        assert probes.LISTEN_PORT_FLOOR <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # still free: nothing holds it
    assert len(ports) > 1


def test_ephemeral_low_reads_the_kernel_range_or_defaults(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert probes.ephemeral_low(f) == 40000
    f.write_text("garbage")
    assert probes.ephemeral_low(f) == 32768
    assert probes.ephemeral_low(tmp_path / "missing") == 32768
