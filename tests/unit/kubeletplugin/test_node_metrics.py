"""The node daemon's request metrics, read from the registry as Prometheus scrapes them: the
kubelet's calls counted, timed and in flight; the devices prepared, by type, right after a
restart; and every error type produced by its real failure path through `NodePlugin`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpudra.api.meta import RawObject
from gpudra.cdi.writer import CdiWriter
from gpudra.devices.inventory import Inventory
from gpudra.kube.errors import ServerError
from gpudra.kube.resources import RESOURCECLAIMS, Resource
from gpudra.kubeletplugin.checkpoint_store import CheckpointStore
from gpudra.kubeletplugin.node import Budget, NodePlugin
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.kubeletplugin.prepare_errors import ErrorType
from gpudra.kubeletplugin.sharing.mps import MpsControl, start_time
from gpudra.metrics.node import (
    DEVICE_TYPES,
    OPERATIONS,
    PREPARE,
    PREPARE_ERROR_TYPES,
    UNPREPARE,
    UNPREPARE_ERROR_TYPES,
    NodeMetrics,
)
from gpudra.nodestate.checkpoint import MpsProcess
from gpudra.nvml.errors import NvmlError
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.plugins import MIG_DEV, REF, FakeClient, mig_node, plugin
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE, claim, result

TOTAL = "gpudra_node_requests_total"
INFLIGHT = "gpudra_node_requests_inflight"
DURATION_COUNT = "gpudra_node_request_duration_seconds_count"
DURATION_SUM = "gpudra_node_request_duration_seconds_sum"
PREPARED = "gpudra_node_prepared_devices"
PREPARE_ERRORS = "gpudra_node_prepare_errors_total"
UNPREPARE_ERRORS = "gpudra_node_unprepare_errors_total"
BAD_UID = ClaimRef(namespace="ns", name="c", uid="../outside/x")


def sample(m: NodeMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, {"driver": DRIVER, **labels})
    assert value is not None, f"no series {name}{labels}"
    return value


def calls(m: NodeMetrics, name: str, operation: str) -> float:
    return sample(m, name, operation=operation)


def prepared(m: NodeMetrics) -> dict[str, float]:
    return {t: sample(m, PREPARED, node=NODE, device_type=t) for t in DEVICE_TYPES}


def errors(m: NodeMetrics, name: str, types: tuple[str, ...]) -> dict[str, float]:
    return {t: sample(m, name, error_type=t) for t in types}


def test_the_error_types_are_the_metrics_labels() -> None:
    assert [t.value for t in ErrorType] == list(PREPARE_ERROR_TYPES)
    assert set(UNPREPARE_ERROR_TYPES) < set(PREPARE_ERROR_TYPES)


def test_every_series_exists_at_zero_before_the_first_call(tmp_path: Path) -> None:
    m = plugin(tmp_path, FakeClient(None)).metrics
    for op in OPERATIONS:
        for name in (TOTAL, INFLIGHT, DURATION_COUNT):
            assert calls(m, name, op) == 0.0, (name, op)
    assert set(errors(m, PREPARE_ERRORS, PREPARE_ERROR_TYPES).values()) == {0.0}
    assert set(errors(m, UNPREPARE_ERRORS, UNPREPARE_ERROR_TYPES).values()) == {0.0}
    assert prepared(m) == {"gpu": 0.0, "mig": 0.0}


def test_a_prepare_and_an_unprepare_are_counted_and_timed(tmp_path: Path) -> None:
    client = FakeClient(claim(result("gpu-3")))
    node = plugin(tmp_path, client)
    m = node.metrics
    other = ClaimRef(namespace="ns", name="gone", uid="uid-9")  # one call, two claims
    out = node.prepare([REF, other])
    assert not out["uid-1"].error and out["uid-9"].error
    assert calls(m, TOTAL, PREPARE) == 1 and calls(m, DURATION_COUNT, PREPARE) == 1
    assert calls(m, DURATION_SUM, PREPARE) > 0
    assert calls(m, TOTAL, UNPREPARE) == 0

    assert node.unprepare([REF]) == {"uid-1": ""}
    assert calls(m, TOTAL, UNPREPARE) == 1 and calls(m, DURATION_COUNT, UNPREPARE) == 1
    assert calls(m, TOTAL, PREPARE) == 1
    # the per-claim counter the existing boards read still counts claims
    ops = "gpudra_node_claim_operations_total"
    assert m.registry.get_sample_value(ops, {"operation": "prepare", "outcome": "ok"}) == 1
    assert m.registry.get_sample_value(ops, {"operation": "prepare", "outcome": "error"}) == 1
    assert m.registry.get_sample_value(ops, {"operation": "unprepare", "outcome": "ok"}) == 1


class GatedClient(FakeClient):
    """Its claim reads wait until ``release`` is set: an API server slow to answer."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        super().__init__(obj)
        self.reading = threading.Event()
        self.release = threading.Event()

    def get(
        self,
        res: Resource,
        name: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> RawObject:
        self.reading.set()
        assert self.release.wait(10), "the test never answered the read"
        return super().get(res, name, namespace=namespace, timeout=timeout)


def test_a_prepare_waiting_on_the_api_server_is_in_flight(tmp_path: Path) -> None:
    client = GatedClient(claim(result("gpu-3")))
    node = plugin(tmp_path, client)
    m = node.metrics
    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(node.prepare, [REF])
        try:
            assert client.reading.wait(10), "the prepare never read its claim"
            assert calls(m, INFLIGHT, PREPARE) == 1
            assert calls(m, TOTAL, PREPARE) == 0  # counted when answered
            assert node.unprepare([ClaimRef("ns", "x", "uid-x")]) == {"uid-x": ""}
            assert calls(m, INFLIGHT, UNPREPARE) == 0 and calls(m, TOTAL, UNPREPARE) == 1
            assert calls(m, INFLIGHT, PREPARE) == 1
        finally:
            client.release.set()
        assert not call.result(timeout=10)["uid-1"].error
    assert calls(m, INFLIGHT, PREPARE) == 0
    assert calls(m, TOTAL, PREPARE) == 1 and calls(m, DURATION_COUNT, PREPARE) == 1


def test_prepared_devices_by_type_follow_the_checkpoint_across_restarts(tmp_path: Path) -> None:
    """A whole GPU (GPU 4), a static MIG device (an instance on GPU 3) and a dynamic-MIG
    device (GPU 2); then an unprepare, a restart, garbage collection and a reboot."""
    CheckpointStore(tmp_path / "checkpoint.json", node_name=NODE).begin_boot("boot-1")
    client = FakeClient(None)
    backend = MockBackend(load_machine("dgx-h100-mig"), node_name=NODE)
    dynamic = frozenset({2, 4})
    node = plugin(tmp_path, client, backend=backend, dynamic=dynamic)
    static = backend.create_mig_device(backend.inventory().gpus[3].uuid, "1g.10gb", 0)
    refs = {
        dev: ClaimRef(namespace="ns", name="c", uid=f"uid-{i}")
        for i, dev in enumerate(["gpu-4", "gpu-3-mig-1g10gb-19-0", MIG_DEV])
    }
    for dev, ref in refs.items():
        client.obj = claim(result(dev), uid=ref.uid)
        out = node.prepare([ref])[ref.uid]
        assert not out.error, dev
    assert node.checkpoint.claims()["uid-1"].devices[0].uuid == static.uuid
    assert prepared(node.metrics) == {"gpu": 1, "mig": 2}

    assert node.unprepare([refs[MIG_DEV]]) == {"uid-2": ""}
    assert prepared(node.metrics) == {"gpu": 1, "mig": 1}

    # the daemon restarts: a new process, new metrics, the same checkpoint
    again = plugin(tmp_path, client, backend=backend, dynamic=dynamic)
    assert prepared(again.metrics) == {"gpu": 1, "mig": 1}

    client.obj = claim(result("gpu-4"), uid="uid-0")  # the static-MIG claim was deleted
    (released,) = again.collect_garbage()
    assert released.uid == "uid-1"
    assert prepared(again.metrics) == {"gpu": 1, "mig": 0}

    # the node reboots: what was prepared is gone until the kubelet prepares it again
    CheckpointStore(tmp_path / "checkpoint.json", node_name=NODE).begin_boot("boot-2")
    rebooted = plugin(tmp_path, client, backend=backend, dynamic=dynamic)
    assert prepared(rebooted.metrics) == {"gpu": 0, "mig": 0}
    client.obj = claim(result("gpu-4"), uid="uid-0")
    assert not rebooted.prepare([refs["gpu-4"]])["uid-0"].error
    assert prepared(rebooted.metrics) == {"gpu": 1, "mig": 0}


# --- each error type, by its real failure path ---------------------------------------------


class FailingBackend(MockBackend):
    """The mock node whose inventory reads raise ``error`` while it is set."""

    error: Exception | None = None

    def inventory(self) -> Inventory:
        if self.error is not None:
            raise self.error
        return super().inventory()


@dataclass
class Setup:
    node: NodePlugin
    ref: ClaimRef = REF
    budget: Budget = field(default_factory=Budget)


def failing_mig_node(tmp: Path) -> tuple[NodePlugin, FailingBackend]:
    """dgx-h100-mig, GPU 2 dynamic, with its claim for a dynamic-MIG device prepared."""
    backend = FailingBackend(load_machine("dgx-h100-mig"), node_name=NODE)
    node = plugin(tmp, FakeClient(claim(result(MIG_DEV))), backend=backend, dynamic=frozenset({2}))
    assert not node.prepare([REF])["uid-1"].error
    return node, backend


def configured(tmp: Path, sharing: dict[str, Any]) -> Setup:
    c = claim(result("gpu-3"))
    c["status"]["allocation"]["devices"]["config"] = [
        {
            "source": "FromClaim",
            "opaque": {
                "driver": DRIVER,
                "parameters": {
                    "apiVersion": "resource.gpudra.io/v1beta1",
                    "kind": "GpuConfig",
                    "sharing": sharing,
                },
            },
        }
    ]
    return Setup(plugin(tmp, FakeClient(c)))


MPS_CONFIG = {
    "source": "FromClaim",
    "requests": ["shared"],
    "opaque": {
        "driver": DRIVER,
        "parameters": {
            "apiVersion": "resource.gpudra.io/v1beta1",
            "kind": "GpuConfig",
            "sharing": {"strategy": "MPS"},
        },
    },
}


def mixed_mps(tmp: Path) -> Setup:
    """One request shared with MPS, the other not: one claim, one daemon, so refused."""
    c = claim(result("gpu-3", "shared"), result("gpu-4", "alone"))
    c["status"]["allocation"]["devices"]["config"] = [MPS_CONFIG]
    return Setup(plugin(tmp, FakeClient(c)))


def mps_stuck(tmp: Path) -> Setup:
    """A prepared MPS claim whose daemon ignores SIGTERM."""
    c = claim(result("gpu-3", "shared"))
    c["status"]["allocation"]["devices"]["config"] = [MPS_CONFIG]
    s = Setup(plugin(tmp, FakeClient(c), mps=MpsControl(mock=True, wait_s=0.1)))
    assert not s.node.prepare([REF])["uid-1"].error
    held = s.node.checkpoint.get(REF.uid)
    assert held is not None and held.mps_process is not None
    MpsControl(mock=True).stop(held.mps, held.mps_process)
    stuck = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print(flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert stuck.stdout is not None and stuck.stdout.readline()  # SIGTERM ignored from here
    start = start_time(stuck.pid)
    assert start is not None
    recorded = MpsProcess(pid=stuck.pid, start_time=start)
    s.node.checkpoint.put(held.model_copy(update={"mps_process": recorded}))
    STUCK.append(stuck)
    return s


STUCK: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_stuck_daemons() -> Iterator[None]:
    yield
    while STUCK:
        p = STUCK.pop()
        p.kill()
        p.wait()


def mps_fails(tmp: Path) -> Setup:
    """The MPS control program is not there (real mode on a node without it)."""
    c = claim(result("gpu-3", "shared"))
    c["status"]["allocation"]["devices"]["config"] = [MPS_CONFIG]
    control = MpsControl(mock=False, control=str(tmp / "no-nvidia-cuda-mps-control"))
    return Setup(plugin(tmp, FakeClient(c), mps=control))


def gpu_claim(tmp: Path, backend: MockBackend | None = None) -> Setup:
    return Setup(plugin(tmp, FakeClient(claim(result("gpu-3"))), backend=backend))


def prepared_elsewhere(tmp: Path) -> Setup:
    client = FakeClient(claim(result("gpu-3"), uid="uid-0"))
    node = plugin(tmp, client)
    assert not node.prepare([ClaimRef("ns", "c", "uid-0")])["uid-0"].error
    client.obj = claim(result("gpu-3"))
    return Setup(node)


def foreign_instance(tmp: Path) -> Setup:
    node, backend = mig_node(tmp, FakeClient(claim(result(MIG_DEV))))
    backend.create_mig_device(backend.inventory().gpus[2].uuid, "3g.40gb", 0)
    return Setup(node)


def lost_gpu(tmp: Path) -> Setup:
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE)
    backend.fall_off_bus(3)
    return gpu_claim(tmp, backend)


def refused_mig(tmp: Path) -> Setup:
    # dgx-h100 has MIG mode disabled; GPU 0 set as dynamic MIG: NVML refuses the create
    client = FakeClient(claim(result("gpu-0-mig-1g10gb-19-0")))
    return Setup(plugin(tmp, client, dynamic=frozenset({0})))


def nvml_down(tmp: Path, error: Exception) -> Setup:
    backend = FailingBackend(load_machine("dgx-h100"), node_name=NODE)
    backend.error = error
    return gpu_claim(tmp, backend)


def api_fails(tmp: Path) -> Setup:
    client = FakeClient(claim(result("gpu-3")))
    client.fail_next("get", RESOURCECLAIMS, ServerError("etcdserver: request timed out"))
    return Setup(plugin(tmp, client))


def spec_path_taken(tmp: Path) -> Setup:
    s = gpu_claim(tmp)
    CdiWriter(tmp).path(REF.uid).mkdir()  # the spec cannot be renamed into place
    return s


def checkpoint_unwritable(tmp: Path, *, prepared: bool) -> Setup:
    s = gpu_claim(tmp)
    if prepared:
        assert not s.node.prepare([REF])["uid-1"].error
    s.node.checkpoint.path.unlink(missing_ok=True)
    s.node.checkpoint.path.mkdir()  # the new checkpoint cannot be renamed into place
    return s


PREPARE_FAILURES: dict[str, tuple[Callable[[Path], Setup], ErrorType]] = {
    "uid that is a path": (
        lambda tmp: Setup(plugin(tmp, FakeClient(None)), BAD_UID),
        ErrorType.INVALID_REQUEST,
    ),
    "claim deleted": (lambda tmp: Setup(plugin(tmp, FakeClient(None))), ErrorType.CLAIM_NOT_FOUND),
    "claim recreated": (
        lambda tmp: Setup(plugin(tmp, FakeClient(claim(result("gpu-3"), uid="uid-2")))),
        ErrorType.CLAIM_NOT_FOUND,
    ),
    "allocated for another node": (
        lambda tmp: Setup(plugin(tmp, FakeClient(claim(result("gpu-3"), node="node-b")))),
        ErrorType.NOT_ALLOCATED,
    ),
    "API server error": (api_fails, ErrorType.API_ERROR),
    "deadline passed": (
        lambda tmp: Setup(gpu_claim(tmp).node, budget=Budget(deadline=time.monotonic())),
        ErrorType.DEADLINE_EXCEEDED,
    ),
    "kubelet cancelled": (
        lambda tmp: Setup(gpu_claim(tmp).node, budget=Budget(cancelled=lambda: True)),
        ErrorType.DEADLINE_EXCEEDED,
    ),
    "unknown device": (
        lambda tmp: Setup(plugin(tmp, FakeClient(claim(result("gpu-42"))))),
        ErrorType.UNKNOWN_DEVICE,
    ),
    "lost GPU": (lost_gpu, ErrorType.DEVICE_UNHEALTHY),
    "malformed config": (
        lambda tmp: configured(tmp, {"strategy": "Sliced"}),
        ErrorType.INVALID_CONFIG,
    ),
    "MPS mixed with exclusive devices": (mixed_mps, ErrorType.UNSUPPORTED_CONFIG),
    "prepared for another claim": (prepared_elsewhere, ErrorType.DEVICE_BUSY),
    "foreign MIG instance": (foreign_instance, ErrorType.DEVICE_BUSY),
    "MIG create refused": (refused_mig, ErrorType.MIG_ERROR),
    "MPS daemon not started": (mps_fails, ErrorType.MPS_ERROR),
    "NVML not answering": (
        lambda tmp: nvml_down(tmp, NvmlError("NVML did not answer")),
        ErrorType.NVML_ERROR,
    ),
    "CDI spec not written": (spec_path_taken, ErrorType.CDI_ERROR),
    "checkpoint not written": (
        lambda tmp: checkpoint_unwritable(tmp, prepared=False),
        ErrorType.CHECKPOINT_ERROR,
    ),
    "a bug below": (
        lambda tmp: nvml_down(tmp, RuntimeError("a bug in the backend")),
        ErrorType.INTERNAL,
    ),
}


@pytest.mark.parametrize("case", PREPARE_FAILURES)
def test_each_prepare_failure_is_counted_by_its_error_type(tmp_path: Path, case: str) -> None:
    make, expected = PREPARE_FAILURES[case]
    s = make(tmp_path)
    m = s.node.metrics
    before = errors(m, PREPARE_ERRORS, PREPARE_ERROR_TYPES)
    out = s.node.prepare([s.ref], s.budget)[s.ref.uid]
    assert out.error and out.error_type is expected, out
    after = errors(m, PREPARE_ERRORS, PREPARE_ERROR_TYPES)
    assert {t: after[t] - before[t] for t in after if after[t] != before[t]} == {expected.value: 1}
    assert set(errors(m, UNPREPARE_ERRORS, UNPREPARE_ERROR_TYPES).values()) == {0.0}


def mig_in_use(tmp: Path) -> Setup:
    node, backend = mig_node(tmp, FakeClient(claim(result(MIG_DEV))))
    assert not node.prepare([REF])["uid-1"].error
    (instance,) = backend.inventory().mig_devices
    backend.run_process(instance.uuid)  # NVML refuses to destroy it
    return Setup(node)


def inventory_fails(tmp: Path, error: Exception) -> Setup:
    node, backend = failing_mig_node(tmp)
    backend.error = error
    return Setup(node)


def spec_is_a_directory(tmp: Path) -> Setup:
    s = Setup(plugin(tmp, FakeClient(None)))
    CdiWriter(tmp).path(REF.uid).mkdir()  # a claim never prepared: only its spec is removed
    return s


UNPREPARE_FAILURES: dict[str, tuple[Callable[[Path], Setup], ErrorType]] = {
    "uid that is a path": (
        lambda tmp: Setup(plugin(tmp, FakeClient(None)), BAD_UID),
        ErrorType.INVALID_REQUEST,
    ),
    "MIG instance in use": (mig_in_use, ErrorType.MIG_ERROR),
    "MPS daemon does not stop": (mps_stuck, ErrorType.MPS_ERROR),
    "NVML not answering": (
        lambda tmp: inventory_fails(tmp, NvmlError("NVML did not answer")),
        ErrorType.NVML_ERROR,
    ),
    "CDI spec not removed": (spec_is_a_directory, ErrorType.CDI_ERROR),
    "checkpoint not written": (
        lambda tmp: checkpoint_unwritable(tmp, prepared=True),
        ErrorType.CHECKPOINT_ERROR,
    ),
    "a bug below": (
        lambda tmp: inventory_fails(tmp, RuntimeError("a bug in the backend")),
        ErrorType.INTERNAL,
    ),
}


@pytest.mark.parametrize("case", UNPREPARE_FAILURES)
def test_each_unprepare_failure_is_counted_by_its_error_type(tmp_path: Path, case: str) -> None:
    make, expected = UNPREPARE_FAILURES[case]
    s = make(tmp_path)
    m = s.node.metrics
    before = errors(m, UNPREPARE_ERRORS, UNPREPARE_ERROR_TYPES)
    total = calls(m, TOTAL, UNPREPARE)
    error = s.node.unprepare([s.ref])[s.ref.uid]  # an answer, never a failed call
    assert error
    after = errors(m, UNPREPARE_ERRORS, UNPREPARE_ERROR_TYPES)
    assert {t: after[t] - before[t] for t in after if after[t] != before[t]} == {expected.value: 1}
    assert calls(m, TOTAL, UNPREPARE) == total + 1 and calls(m, INFLIGHT, UNPREPARE) == 0


def test_every_error_type_has_its_failure_path_here() -> None:
    assert {kind for _, kind in PREPARE_FAILURES.values()} == set(ErrorType)
    assert {kind.value for _, kind in UNPREPARE_FAILURES.values()} == set(UNPREPARE_ERROR_TYPES)
