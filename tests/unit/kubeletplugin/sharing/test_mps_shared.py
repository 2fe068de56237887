"""The shared MPS daemon of a GPU whose shares several claims hold, through `NodePlugin` with
the mock daemon (a real process checked in /proc): one process for all the claims, started
by the first, stopped by the last, restarted once when it dies, never stopped by a claim
that fails while others use it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudra.cdi.writer import CdiWriter
from gpudra.kube.resources import RESOURCECLAIMS
from gpudra.kubeletplugin.node import NodePlugin
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.kubeletplugin.sharing.mps import start_time
from gpudra.nodestate.checkpoint import MpsProcess
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra_testkit.builders import claim_on_node
from tests.unit.kubeletplugin.plugins import FakeClient, plugin
from tests.unit.kubeletplugin.scenarios import NODE, result

UUID = MockBackend(load_machine("dgx-h100"), node_name=NODE).inventory().gpus[1].uuid
A, B = ClaimRef("ns", "a", "uid-a"), ClaimRef("ns", "b", "uid-b")


def share_claim(ref: ClaimRef, memory: str) -> dict[str, Any]:
    consumed = {"memory": memory, "multiprocessors": "0", "shares": "1"}
    r = result("gpu-1", shareID=f"share-{ref.name}", consumedCapacity=consumed)
    return claim_on_node(NODE, r, uid=ref.uid, name=ref.name, namespace=ref.namespace)


def node_of(tmp: Path) -> NodePlugin:
    client = FakeClient(None)
    client.seed(RESOURCECLAIMS, share_claim(A, "40Gi"), share_claim(B, "20Gi"))
    return plugin(tmp, client)


def daemons(tmp: Path) -> list[int]:
    """The live mock daemons of this test (their argv names its dirs)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "mps_daemon" in argv and str(tmp) in argv and start_time(int(p.name)):
                found.append(int(p.name))
    return found


@pytest.fixture(autouse=True)
def no_daemon_left(tmp_path: Path) -> Iterator[None]:
    """A failing test must not leave its daemons running."""
    yield
    for pid in daemons(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def process(node: NodePlugin, ref: ClaimRef) -> MpsProcess | None:
    held = node.checkpoint.get(ref.uid)
    assert held is not None and held.mps is not None and held.mps.shared
    return held.mps_process


def daemon_count(node: NodePlugin) -> float | None:
    return node.metrics.registry.get_sample_value("gpudra_node_mps_daemons")


def test_two_claims_on_one_gpu_use_one_daemon_the_last_stops_it(tmp_path: Path) -> None:
    node = node_of(tmp_path)
    out = node.prepare([A, B])
    assert not out[A.uid].error and not out[B.uid].error, out
    first, second = process(node, A), process(node, B)
    assert first is not None and first == second
    assert daemons(tmp_path) == [first.pid]
    assert daemon_count(node) == 1
    shared = tmp_path / "mps" / f"gpu-{UUID}"
    assert node.unprepare([A]) == {A.uid: ""}
    assert daemons(tmp_path) == [first.pid] and (shared / "pipe").is_dir()  # B still uses it
    assert daemon_count(node) == 1
    assert node.unprepare([B]) == {B.uid: ""}
    assert daemons(tmp_path) == [] and not shared.exists()
    assert daemon_count(node) == 0


def test_claims_prepared_at_once_never_start_two_daemons(tmp_path: Path) -> None:
    node = node_of(tmp_path)
    start = threading.Barrier(2)
    errors: list[str] = []

    def prepare(ref: ClaimRef) -> None:
        start.wait()
        errors.append(node.prepare([ref])[ref.uid].error)

    threads = [threading.Thread(target=prepare, args=(r,)) for r in (A, B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["", ""]
    first, second = process(node, A), process(node, B)
    assert first is not None and first == second and daemons(tmp_path) == [first.pid]
    node.unprepare([A, B])
    assert daemons(tmp_path) == []


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while start_time(pid) is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # the test process is its parent
        time.sleep(0.02)


def test_a_dead_shared_daemon_is_restarted_once_for_all_its_claims(tmp_path: Path) -> None:
    node = node_of(tmp_path)
    node.prepare([A, B])
    old = process(node, A)
    assert old is not None
    _kill(old.pid)
    assert {c.uid for c in node.check_mps()} == {A.uid, B.uid}  # one started, one adopted
    new_a, new_b = process(node, A), process(node, B)
    assert new_a is not None and new_a.pid != old.pid and new_a == new_b
    assert daemons(tmp_path) == [new_a.pid]
    assert daemon_count(node) == 1
    assert node.check_mps() == []
    node.unprepare([A, B])
    assert daemons(tmp_path) == []


def test_a_failed_prepare_leaves_the_daemon_others_use(tmp_path: Path) -> None:
    node = node_of(tmp_path)
    assert not node.prepare([A])[A.uid].error
    running = process(node, A)
    assert running is not None
    CdiWriter(tmp_path).path(B.uid).mkdir()  # B's spec cannot be renamed into place
    assert node.prepare([B])[B.uid].error
    assert node.checkpoint.get(B.uid) is None
    assert daemons(tmp_path) == [running.pid] and process(node, A) == running
    node.unprepare([A])
    assert daemons(tmp_path) == []


def test_a_failed_prepare_of_the_only_claim_leaves_no_daemon(tmp_path: Path) -> None:
    node = node_of(tmp_path)
    CdiWriter(tmp_path).path(A.uid).mkdir()
    assert node.prepare([A])[A.uid].error
    assert daemons(tmp_path) == [] and not (tmp_path / "mps" / f"gpu-{UUID}").exists()
