"""The DRA plugin and the device plugin on one node: a GPU is served by one of them, never
both.  Each locks its GPU set in the shared lock dir at start; an overlap stops the second
with a message naming the GPUs and the other daemon, and split sets run side by side."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudra.deviceplugin.daemon import DevicePluginDaemon
from gpudra.deviceplugin.options import effective
from gpudra.kubeletplugin.daemon import KubeletPluginDaemon
from gpudra.nodeagent.locks import GpuLocked
from gpudra.settings import DevicePluginSettings, KubeletPluginSettings
from tests.fakes.kube import FakeKubeClient
from tests.unit.deviceplugin.nodes import NODE, mock


@pytest.fixture
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="co-") as d:
        yield Path(d)


def dra(root: Path, gpus: str) -> KubeletPluginDaemon:
    s = KubeletPluginSettings(
        node_name=NODE,
        backend="mock",
        profile="dgx-h100",
        plugin_dir=root / "plugins" / "gpu.gpudra.io",
        registry_dir=root / "plugins_registry",  # lock dir: <root>/gpudra/gpus
        cdi_dir=root / "cdi",
        mock_state_file=root / "state.json",
        boot_id_file=root / "boot_id",
        gpus=gpus,
    )
    (root / "boot_id").write_text("b1\n")
    return KubeletPluginDaemon(s, client=FakeKubeClient(), backend=mock("dgx-h100"))


def dp(root: Path, gpus: str) -> DevicePluginDaemon:
    s = DevicePluginSettings(
        node_name=NODE,
        backend="mock",
        profile="dgx-h100",
        kubelet_dir=root,
        cdi_dir=root / "cdi",
        gpus=gpus,
    )
    return DevicePluginDaemon(s, backend=mock("dgx-h100"), options=effective(s, None))


def test_overlapping_gpu_sets_stop_the_second_daemon_with_the_gpus_named(root: Path) -> None:
    first = dra(root, "0-5")
    try:
        with pytest.raises(GpuLocked) as e:
            dp(root, "4-7")
        msg = str(e.value)
        uuids = [g.uuid for g in mock("dgx-h100").inventory().gpus]
        assert f"GPU 4 ({uuids[4]}) is served by gpudra kubelet-plugin (pid " in msg
        assert f"GPU 5 ({uuids[5]})" in msg and "GPU 6" not in msg
        assert "a GPU is served by the DRA plugin or the device plugin, never both" in msg
        assert "give this device-plugin a --gpus that excludes them" in msg
        # nothing half-taken: GPUs 6 and 7 are free again for a correct device plugin
        dp(root, "6-7").stop()
    finally:
        first.stop()


def test_the_other_way_round_names_the_device_plugin(root: Path) -> None:
    first = dp(root, "all")
    try:
        with pytest.raises(
            GpuLocked, match=r"GPU 0 \(GPU-[^)]+\) is served by gpudra device-plugin"
        ):
            dra(root, "0")
    finally:
        first.stop()
    dra(root, "0").stop()  # the locks go with their holder


def test_disjoint_sets_serve_side_by_side(root: Path) -> None:
    a = dra(root, "0-3")
    b = dp(root, "4-7")
    try:
        assert {d.gpu_index for d in a.catalogues.current().devices.values()} == {0, 1, 2, 3}
        (r,) = b.service.layout.resources
        assert [d.gpu_index for d in r.devices] == [4, 5, 6, 7]
    finally:
        a.stop()
        b.stop()


def test_a_gpu_set_the_node_lacks_is_a_settings_error(root: Path) -> None:
    from gpudra.catalogue.gpuset import GpuSetError

    with pytest.raises(
        GpuSetError, match=r"invalid settings: gpus: GPU set '6-9' names GPU\(s\) \[8, 9\]"
    ):
        dp(root, "6-9")
