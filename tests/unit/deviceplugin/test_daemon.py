"""``gpudra device-plugin``'s daemon against the kubelet stand-in over real sockets: it
registers (also when the kubelet comes later), serves Allocate with the CDI spec on disk,
follows GPU faults (and NVML's recovery action) in ListAndWatch without disturbing the other
GPUs, re-registers within a second of a kubelet restart, and follows a MIG layout that
changes."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpudra.cdi.spec import DEVICE_PLUGIN_SPEC_FILE
from gpudra.deviceplugin.config import parse_config
from gpudra.deviceplugin.daemon import DevicePluginDaemon
from gpudra.deviceplugin.options import effective
from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.errors import NvmlError
from gpudra.nvml.mock import MockBackend
from gpudra.settings import DevicePluginSettings
from gpudra_testkit.harness.dpkubelet import DevicePluginKubelet
from gpudra_testkit.harness.waiting import wait_for
from tests.unit.deviceplugin.nodes import NODE, mock, with_migs

GPU = "nvidia.com/gpu"


@pytest.fixture
def root() -> Iterator[Path]:
    # unix socket paths are short: /tmp, not pytest's deep tmp_path
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dp-") as d:
        yield Path(d)


def settings(root: Path, **kw: Any) -> DevicePluginSettings:
    return DevicePluginSettings(
        node_name=NODE,
        backend="mock",
        profile=kw.pop("profile", "dgx-h100"),
        kubelet_dir=root,
        cdi_dir=root / "cdi",
        mock_state_file=root / "mock-state.json",
        nvml_probe_interval_s=0.2,
        health_recovery_s=kw.pop("health_recovery_s", 0.3),
        **kw,
    )


class Running:
    """A daemon in-process and the kubelet stand-in on the same dir."""

    def __init__(
        self,
        root: Path,
        config: str | None = None,
        backend: type[MockBackend] = MockBackend,
        **kw: Any,
    ) -> None:
        self.s = settings(root, **kw)
        cfg = parse_config(config, source="test") if config else None
        self.backend = backend(
            mock(self.s.profile or "").machine, node_name=NODE, state_file=self.s.mock_state_file
        )
        self.daemon = DevicePluginDaemon(
            self.s, backend=self.backend, options=effective(self.s, cfg)
        )
        self.kubelet = DevicePluginKubelet(self.s.device_plugin_path)

    def ids(self, resource: str = GPU) -> list[str]:
        return sorted(self.kubelet.devices(resource))

    def close(self) -> None:
        self.daemon.stop()
        self.kubelet.stop()


@pytest.fixture
def running(root: Path) -> Iterator[Running]:
    r = Running(root)
    r.kubelet.start()
    r.daemon.start()
    try:
        yield r
    finally:
        r.close()


def unhealthy(devices: dict[str, str]) -> set[str]:
    return {i for i, h in devices.items() if h == "Unhealthy"}


def test_registers_and_allocates_with_the_cdi_spec_written_first(running: Running) -> None:
    reg = running.kubelet.wait_registered(GPU)
    assert reg.endpoint == "gpudra-gpu.sock"
    assert reg.options.get_preferred_allocation_available and not reg.options.pre_start_required
    devices = running.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    assert unhealthy(devices) == set()
    spec = running.s.cdi_dir / DEVICE_PLUGIN_SPEC_FILE
    spec.unlink()  # gone (a cleaner, a reboot): Allocate writes it before it answers
    ids = running.ids()[:2]
    resp = running.kubelet.allocate(GPU, [ids])
    (c,) = resp.container_responses
    assert c.envs["NVIDIA_VISIBLE_DEVICES"] == ",".join(ids)
    names = [d.name for d in c.cdi_devices]
    assert len(names) == 2 and all(n.startswith("k8s.gpu.gpudra.io/device=gpu-") for n in names)
    assert spec.exists()
    assert all(n.split("=", 1)[1] in spec.read_text() for n in names)


def test_preferred_allocation_answers_with_the_nvlink_scorer(root: Path) -> None:
    r = Running(root, profile="dgx1-v100")
    r.kubelet.start()
    r.daemon.start()
    try:
        r.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
        inv = r.backend.inventory()
        uuid = [g.uuid for g in inv.gpus]
        got = r.kubelet.preferred(GPU, r.ids(), [], 4)
        assert {uuid.index(i) for i in got} in ({0, 1, 2, 3}, {4, 5, 6, 7})
        pair = r.kubelet.preferred(GPU, [uuid[i] for i in (0, 1, 2, 6)], [], 2)
        assert {uuid.index(i) for i in pair} == {1, 2}  # the double link
    finally:
        r.close()


def test_a_kubelet_that_comes_later_is_registered_within_a_second(root: Path) -> None:
    r = Running(root)
    r.daemon.start()  # no kubelet.sock yet
    try:
        wait_for("the plugin socket", (r.s.device_plugin_path / "gpudra-gpu.sock").exists, 5)
        began = time.monotonic()
        r.kubelet.start()
        reg = r.kubelet.wait_registered(GPU, timeout=5)
        assert reg.received - began < 1.0
        r.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    finally:
        r.close()


def test_a_kubelet_restart_is_followed_by_a_new_registration_within_a_second(
    running: Running,
) -> None:
    running.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    for _ in range(3):
        reborn = running.kubelet.restart()  # its sockets and ours are gone
        reg = running.kubelet.wait_registered(GPU, after=reborn, timeout=5)
        print(f"re-registered {reg.received - reborn:.3f}s after kubelet.sock was recreated")
        assert reg.received - reborn < 1.0
        running.kubelet.wait_devices(GPU, lambda d: len(d) == 8 and not unhealthy(d))
        resp = running.kubelet.allocate(GPU, [running.ids()[:1]])
        assert resp.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"] == running.ids()[0]


def test_a_lost_gpu_turns_unhealthy_within_2s_and_the_others_keep_serving(
    running: Running,
) -> None:
    running.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    uuids = [g.uuid for g in running.backend.inventory().gpus]
    began = time.monotonic()
    running.backend.fall_off_bus(3)
    running.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == {uuids[3]}, timeout=2)
    print(f"GPU 3 Unhealthy in ListAndWatch {time.monotonic() - began:.3f}s after it was lost")
    resp = running.kubelet.allocate(GPU, [[uuids[2], uuids[4]]])
    assert resp.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"] == f"{uuids[2]},{uuids[4]}"
    running.backend.recover(3)
    running.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == set(), timeout=2)


def test_a_fatal_xid_marks_its_gpu_and_an_application_xid_does_not(running: Running) -> None:
    running.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    uuids = [g.uuid for g in running.backend.inventory().gpus]
    running.backend.inject_xid(1, 13)  # the application's fault
    running.backend.inject_xid(5, 79)  # fallen off the bus
    running.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == {uuids[5]}, timeout=2)
    assert running.backend.wait_health_event(0.0) is None  # both events were consumed
    assert unhealthy(running.kubelet.devices(GPU)) == {uuids[5]}


def test_nvmls_recovery_action_marks_a_gpu_and_none_again_heals_it(running: Running) -> None:
    running.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
    uuids = [g.uuid for g in running.backend.inventory().gpus]
    running.backend.inject_xid(1, 13, recovery_action=RecoveryAction.GPU_RESET)
    running.backend.inject_xid(5, 79, recovery_action=RecoveryAction.NONE)  # NVML: fine
    running.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == {uuids[1]}, timeout=2)
    running.backend.set_recovery_action(1, RecoveryAction.NONE)  # the GPU was reset
    # the next probe (0.2 s) reads it, the damping (0.3 s) ends, the GPU serves again
    running.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == set(), timeout=3)


def test_time_slicing_with_nvidias_error_for_more_than_one_replica(root: Path) -> None:
    strict = (
        Path(__file__).parents[2] / "data" / "nvidia-device-plugin" / "time-slicing-strict.yaml"
    )
    r = Running(root, config=strict.read_text())
    r.kubelet.start()
    r.daemon.start()
    try:
        devices = r.kubelet.wait_devices(GPU, lambda d: len(d) == 32)
        assert all("::" in i for i in devices)
        two = r.ids()[:2]
        with pytest.raises(grpc.RpcError) as e:
            r.kubelet.allocate(GPU, [two])
        assert e.value.code() is grpc.StatusCode.UNKNOWN
        assert e.value.details() == (
            "request for 'nvidia.com/gpu: 2' too large: maximum request size for shared "
            "resources is 1"
        )
        one = r.kubelet.allocate(GPU, [two[:1]])
        assert one.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"] == two[0].split("::")[0]
    finally:
        r.close()


def test_a_mig_device_created_later_gets_its_resource_registered(root: Path) -> None:
    r = Running(root, profile="dgx-h100-mig", mig_strategy="mixed")
    with_migs(r.backend, {0: [("3g.40gb", 0)]})
    r.kubelet.start()
    r.daemon.start()
    try:
        r.kubelet.wait_devices("nvidia.com/mig-3g.40gb", lambda d: len(d) == 1)
        with_migs(
            MockBackend(r.backend.machine, node_name=NODE, state_file=r.s.mock_state_file),
            {1: [("1g.10gb", 0), ("1g.10gb", 1)]},
        )
        r.kubelet.wait_registered("nvidia.com/mig-1g.10gb", timeout=5)
        r.kubelet.wait_devices("nvidia.com/mig-1g.10gb", lambda d: len(d) == 2, timeout=5)
    finally:
        r.close()


class Broken(MockBackend):
    """NVML that stops answering on demand (inventory raises), and whose event wait can fail
    once with an unexpected error or end its thread."""

    nvml_down = False
    event_error: BaseException | None = None

    def inventory(self) -> Any:
        if self.nvml_down:
            raise NvmlError("NVML_ERROR_UNKNOWN (the driver is gone)")
        return super().inventory()

    def wait_health_event(self, timeout_s: float) -> Any:
        if self.event_error is not None:
            err, self.event_error = self.event_error, None
            raise err
        return super().wait_health_event(timeout_s)


def broken_running(root: Path, **kw: Any) -> Running:
    return Running(root, backend=Broken, **kw)


def test_nvml_not_answering_keeps_the_last_health_and_fails_healthz_after_nvml_wedged_s(
    root: Path,
) -> None:
    """The rule both node daemons follow (the device plugin used to mark every GPU Unhealthy
    at once): NVML not answering is the daemon's problem, not the GPUs'."""
    r = broken_running(root, nvml_wedged_s=1.0)
    r.kubelet.start()
    r.daemon.start()
    try:
        r.kubelet.wait_devices(GPU, lambda d: len(d) == 8 and not unhealthy(d))
        assert r.daemon.healthz() == (True, "ok\n")
        assert isinstance(r.backend, Broken)
        r.backend.nvml_down = True
        wait_for("/healthz fails", lambda: not r.daemon.healthz()[0], timeout=5)
        text = r.daemon.healthz()[1]
        assert "NVML has not completed a call for" in text and "the driver is gone" in text
        assert unhealthy(r.kubelet.devices(GPU)) == set()  # no guess about the GPUs
        r.backend.nvml_down = False
        wait_for("/healthz ok again", lambda: r.daemon.healthz()[0], timeout=5)
    finally:
        r.close()


def test_the_health_event_loop_survives_an_unexpected_error_and_a_dead_one_fails_healthz(
    root: Path,
) -> None:
    """As in the DRA plugin: any error in the event wait is logged and retried; a thread that
    ends anyway (SystemExit) is named in /healthz."""
    r = broken_running(root)
    assert isinstance(r.backend, Broken)
    r.backend.event_error = RuntimeError("a bug in the event wait")
    r.kubelet.start()
    r.daemon.start()
    try:
        r.kubelet.wait_devices(GPU, lambda d: len(d) == 8)
        wait_for("the error was consumed", lambda: r.backend.event_error is None, timeout=5)  # type: ignore[attr-defined]
        uuids = [g.uuid for g in r.backend.inventory().gpus]
        r.backend.inject_xid(5, 79)
        r.kubelet.wait_devices(GPU, lambda d: unhealthy(d) == {uuids[5]}, timeout=10)
        assert r.daemon.healthz()[0]
        r.backend.event_error = SystemExit("the health-event loop is gone")
        wait_for("/healthz fails", lambda: not r.daemon.healthz()[0], timeout=10)
        assert "thread health-events died: SystemExit" in r.daemon.healthz()[1]
    finally:
        r.close()
