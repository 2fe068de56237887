"""MPS sharing: the plan normalized as NVIDIA's driver does, the CDI edits, and the daemon's
life cycle through `NodePlugin` with the mock daemon, a real process checked in /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.cdi.writer import CdiWriter
from gpudra.kubeletplugin.prepare import resolve_claim
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.sharing.mps import start_time
from gpudra.nodestate.checkpoint import PreparedClaim
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.plugins import REF, FakeClient, plugin
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE, claim, result

BACKEND = MockBackend(load_machine("dgx-h100"), node_name=NODE)
CATALOGUE = build_catalogue(BACKEND.inventory())
UUID = {g.index: g.uuid for g in BACKEND.inventory().gpus}
WHERE = "spec.devices.config[0].opaque.parameters"


def mps_claim(mps_config: dict[str, Any] | None = None, gpus: tuple[int, ...] = (1, 2)) -> Any:
    c = claim(*(result(f"gpu-{i}") for i in gpus))
    sharing: dict[str, Any] = {"strategy": "MPS"}
    if mps_config is not None:
        sharing["mpsConfig"] = mps_config
    params = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig", "sharing": sharing}
    c["status"]["allocation"]["devices"]["config"] = [
        {"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": params}}
    ]
    return c


def plan_of(c: Any) -> Any:
    got = resolve_claim(
        c, REF, driver=DRIVER, node_name=NODE, catalogue=CATALOGUE, mps_root="/plugin/mps"
    )
    return got.mps


PLANS: dict[str, tuple[dict[str, Any] | None, dict[str, str]]] = {
    "no limits": (None, {}),
    "default for every device": (
        {"defaultPinnedDeviceMemoryLimit": "10Gi"},
        {UUID[1]: "10240M", UUID[2]: "10240M"},
    ),
    "per device by index overrides the default": (
        {
            "defaultPinnedDeviceMemoryLimit": "10Gi",
            "defaultPerDevicePinnedMemoryLimit": {"1": "1G"},
        },
        {UUID[1]: "10240M", UUID[2]: "953M"},  # 10^9 bytes: whole MiB, rounded down
    ),
    "per device by UUID": (
        {"defaultPerDevicePinnedMemoryLimit": {UUID[1]: "2Gi"}},
        {UUID[1]: "2048M"},
    ),
}


@pytest.mark.parametrize("case", PLANS)
def test_the_plan_normalizes_pinned_limits_as_nvidia_does(case: str) -> None:
    config, limits = PLANS[case]
    plan = plan_of(mps_claim(config))
    assert plan.uuids == (UUID[1], UUID[2])
    assert plan.limits() == limits
    assert plan.pipe_dir == "/plugin/mps/uid-1/pipe" and plan.log_dir == "/plugin/mps/uid-1/log"


def test_the_plan_carries_the_active_thread_percentage() -> None:
    assert plan_of(mps_claim({"defaultActiveThreadPercentage": 40})).active_thread_percentage == 40
    assert plan_of(mps_claim()).active_thread_percentage is None


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("2", "defaultPerDevicePinnedMemoryLimit.2: index 2 is out of range: the claim has 2"),
        ("GPU-nope", "defaultPerDevicePinnedMemoryLimit.GPU-nope: no device of this claim has"),
    ],
    ids=["index out of range", "unknown UUID"],
)
def test_a_per_device_key_naming_no_device_is_invalid_with_its_path(key: str, message: str) -> None:
    with pytest.raises(PrepareError) as e:
        plan_of(mps_claim({"defaultPerDevicePinnedMemoryLimit": {key: "1Gi"}}))
    assert e.value.kind is ErrorType.INVALID_CONFIG
    assert f"{WHERE}.sharing.mpsConfig.{message}" in str(e.value)


def test_two_mps_configs_in_one_claim_are_refused() -> None:
    c = claim(result("gpu-1", "a"), result("gpu-2", "b"))
    params = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig",
              "sharing": {"strategy": "MPS"}}  # fmt: skip
    c["status"]["allocation"]["devices"]["config"] = [
        {"requests": [r], "opaque": {"driver": DRIVER, "parameters": params}} for r in "ab"
    ]
    with pytest.raises(PrepareError, match="two MPS configs") as e:
        plan_of(c)
    assert e.value.kind is ErrorType.UNSUPPORTED_CONFIG


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def prepared(tmp: Path, c: Any) -> PreparedClaim:
    node = plugin(tmp, FakeClient(c))
    out = node.prepare([REF])[REF.uid]
    assert not out.error, out.error
    held = node.checkpoint.get(REF.uid)
    assert held is not None and held.mps is not None and held.mps_process is not None
    return held


def spec(tmp: Path) -> Any:
    return json.loads(CdiWriter(tmp).path(REF.uid).read_text())


def test_prepare_starts_one_daemon_and_the_containers_reach_it(tmp_path: Path) -> None:
    held = prepared(tmp_path, mps_claim({"defaultActiveThreadPercentage": 30,
                                         "defaultPinnedDeviceMemoryLimit": "1Gi"}))  # fmt: skip
    assert held.mps and held.mps_process
    pid = held.mps_process.pid
    assert alive(pid)
    control = json.loads((Path(held.mps.pipe_dir) / "control").read_text())
    assert control["pid"] == pid and control["visibleDevices"] == f"{UUID[1]},{UUID[2]}"
    assert control["activeThreadPercentage"] == 30
    assert control["pinnedLimits"] == {UUID[1]: "1024M", UUID[2]: "1024M"}
    assert "started" in (Path(held.mps.log_dir) / "control.log").read_text()
    edits = spec(tmp_path)["containerEdits"]
    assert {
        "CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps",
        "CUDA_MPS_LOG_DIRECTORY=/var/log/nvidia-mps",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30",
    } <= set(edits["env"])
    assert [(m["hostPath"], m["containerPath"]) for m in edits["mounts"]] == [
        (held.mps.pipe_dir, "/tmp/nvidia-mps"),
        (held.mps.log_dir, "/var/log/nvidia-mps"),
    ]
    assert str(tmp_path / "mps" / REF.uid) in held.mps.pipe_dir
    plugin(tmp_path, FakeClient(None)).unprepare([REF])


def test_a_restarted_node_adopts_the_live_daemon(tmp_path: Path) -> None:
    c = mps_claim()
    held = prepared(tmp_path, c)
    assert held.mps_process
    CdiWriter(tmp_path).remove(REF.uid)  # so the second prepare runs all the steps again
    again = plugin(tmp_path, FakeClient(c))
    assert not again.prepare([REF])[REF.uid].error
    now = again.checkpoint.get(REF.uid)
    assert now is not None and now.mps_process == held.mps_process  # adopted, not doubled
    assert again.metrics.registry.get_sample_value("gpudra_node_mps_daemons") == 1
    again.unprepare([REF])


def test_a_daemon_started_but_never_recorded_is_adopted(tmp_path: Path) -> None:
    """A node daemon killed between starting an MPS daemon and checkpointing it: the retry
    finds the daemon in the claim's pipe dir and adopts it."""
    c = mps_claim()
    held = prepared(tmp_path, c)
    assert held.mps_process
    first = held.mps_process
    node = plugin(tmp_path, FakeClient(c))
    node.checkpoint.put(held.model_copy(update={"mps_process": None, "state": "preparing"}))
    CdiWriter(tmp_path).remove(REF.uid)
    assert not node.prepare([REF])[REF.uid].error
    now = node.checkpoint.get(REF.uid)
    assert now is not None and now.mps_process == first  # the same process, not a second
    node.unprepare([REF])
    assert not alive(first.pid)


def test_a_dead_daemon_is_restarted_and_unprepare_stops_it(tmp_path: Path) -> None:
    held = prepared(tmp_path, mps_claim())
    assert held.mps and held.mps_process
    old = held.mps_process.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(old) and time.monotonic() < deadline:  # the test process is its parent
        with contextlib.suppress(ChildProcessError):
            os.waitpid(old, os.WNOHANG)
        time.sleep(0.02)
    node = plugin(tmp_path, FakeClient(None))
    assert node.metrics.registry.get_sample_value("gpudra_node_mps_daemons") == 0
    assert [c.uid for c in node.check_mps()] == [REF.uid]
    now = node.checkpoint.get(REF.uid)
    assert now is not None and now.mps_process is not None and now.mps_process.pid != old
    assert alive(now.mps_process.pid)
    assert node.metrics.registry.get_sample_value("gpudra_node_mps_daemons") == 1
    assert node.check_mps() == []  # running: left alone
    assert node.unprepare([REF]) == {REF.uid: ""}
    assert not alive(now.mps_process.pid)
    assert not (tmp_path / "mps" / REF.uid).exists()
    assert node.unprepare([REF]) == {REF.uid: ""}  # idempotent


def test_a_failed_prepare_leaves_no_daemon(tmp_path: Path) -> None:
    CdiWriter(tmp_path).path(REF.uid).mkdir()  # the spec cannot be renamed into place
    node = plugin(tmp_path, FakeClient(mps_claim()))
    out = node.prepare([REF])[REF.uid]
    assert out.error_type is ErrorType.CDI_ERROR
    assert node.checkpoint.get(REF.uid) is None
    assert not (tmp_path / "mps" / REF.uid).exists()
    mine = [
        p for p in Path("/proc").iterdir()
        if p.name.isdigit() and alive(int(p.name))
        and str(tmp_path) in _cmdline(p)
    ]  # fmt: skip
    assert mine == []


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_recycled_pid_is_not_taken_for_the_daemon() -> None:
    from gpudra.kubeletplugin.sharing.mps import MpsControl
    from gpudra.nodestate.checkpoint import MpsProcess

    me = start_time(os.getpid())
    assert me is not None
    assert MpsControl(mock=True).alive(MpsProcess(pid=os.getpid(), start_time=me))
    assert not MpsControl(mock=True).alive(MpsProcess(pid=os.getpid(), start_time=me + 1))


def test_a_daemon_restarted_in_its_dirs_is_found_not_its_dead_predecessor(tmp_path: Path) -> None:
    """A shared daemon restarted where the dead one left its files: ready only once the new
    one has written them, so the next claim adopts the new one instead of starting another."""
    from gpudra.kubeletplugin.sharing.mps import MpsControl
    from gpudra.nodestate.checkpoint import MpsPlan

    root = tmp_path / "mps" / "gpu-x"
    plan = MpsPlan(uuids=("GPU-x",), pipe_dir=f"{root}/pipe", log_dir=f"{root}/log", shared=True)
    mps = MpsControl(mock=True)
    first = mps.start(plan)
    os.kill(first.pid, signal.SIGKILL)
    os.waitpid(first.pid, 0)
    second = mps.start(plan)
    try:
        assert second.pid != first.pid and mps.running(plan) == second
    finally:
        mps.stop(plan, second)
    assert not alive(second.pid) and not root.exists()
