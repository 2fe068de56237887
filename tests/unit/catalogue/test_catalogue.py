"""The node catalogue: effective GPU modes, and every device as published and as prepared."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.catalogue.catalogue import (
    DeviceKind,
    GpuMode,
    MigIdentity,
    ServerCapabilities,
    build_catalogue,
)
from gpudra.nvml.mock import MockBackend, load_machine

OLD, NEW = ServerCapabilities(minor=34), ServerCapabilities(minor=37)


def mig_node(tmp_path: Path) -> MockBackend:
    return MockBackend(load_machine("dgx-h100-mig"), node_name="n", state_file=tmp_path / "s.json")


@pytest.mark.parametrize(
    ("caps", "mode"),
    [
        (NEW, GpuMode.DYNAMIC_MIG),
        (OLD, GpuMode.STATIC_MIG),
        (ServerCapabilities(), GpuMode.DYNAMIC_MIG),
    ],
)
def test_the_server_decides_whether_dynamic_mig_is_dynamic(
    tmp_path: Path, caps: ServerCapabilities, mode: GpuMode
) -> None:
    c = build_catalogue(mig_node(tmp_path).inventory(), dynamic=frozenset({0}), capabilities=caps)
    assert c.modes[0] is mode and set(c.modes[1:]) == {GpuMode.STATIC_MIG}
    assert c.dynamic_refused == (frozenset({0}) if caps is OLD else frozenset())


def test_a_gpu_without_mig_is_whole_whatever_is_asked() -> None:
    inv = MockBackend(load_machine("pcie-l4"), node_name="n").inventory()
    c = build_catalogue(inv, dynamic=frozenset({0, 1}), capabilities=NEW)
    assert set(c.modes) == {GpuMode.WHOLE} and not c.dynamic_refused
    assert [d.kind for d in c.devices.values()] == [DeviceKind.GPU] * 4


def test_every_published_device_is_in_the_catalogue_with_what_prepare_needs(
    tmp_path: Path,
) -> None:
    b = mig_node(tmp_path)
    gpu1 = b.inventory().gpus[1]
    static = b.create_mig_device(gpu1.uuid, "2g.20gb", 2)
    c = build_catalogue(b.inventory(), dynamic=frozenset({0}), capabilities=NEW)
    published = {d["name"] for d in c.published()}
    assert published == {n for n, d in c.devices.items() if d.slice_device is not None}
    placement = c.devices["gpu-0-mig-3g40gb-9-4"]
    gpu0 = b.inventory().gpus[0]
    assert placement.kind is DeviceKind.MIG_PLACEMENT and placement.uuid == ""
    assert placement.mig == MigIdentity(gpu0.uuid, "3g.40gb", 4)
    assert placement.footprint == tuple(f"{gpu0.uuid}/{i}" for i in range(4, 8))
    mig = c.devices["gpu-1-mig-2g20gb-14-2"]
    assert (mig.kind, mig.uuid, mig.footprint) == (
        DeviceKind.MIG,
        static.uuid,
        (f"{gpu1.uuid}/2", f"{gpu1.uuid}/3"),
    )
    assert mig.slice_device is not None and mig.slice_device["attributes"]["uuid"] == {
        "string": static.uuid
    }
    # a static-MIG GPU is not usable whole, so it is not a device at all
    assert "gpu-1" not in c.devices and "gpu-0" in c.devices


def test_a_lost_gpu_stays_known_but_unpublished_and_unhealthy(tmp_path: Path) -> None:
    b = mig_node(tmp_path)
    b.fall_off_bus(2)
    c = build_catalogue(b.inventory(), dynamic=frozenset({2}), capabilities=NEW)
    lost = [d for d in c.devices.values() if d.gpu_index == 2]
    assert lost and all(not d.healthy and d.slice_device is None for d in lost)
    assert not c.publishes_dynamic_mig


def test_controller_managed_gpus_are_tainted_on_every_device(tmp_path: Path) -> None:
    c = build_catalogue(
        mig_node(tmp_path).inventory(), dynamic=frozenset({0, 1}), managed=frozenset({1})
    )
    for d in c.devices.values():
        assert bool(d.slice_device and d.slice_device.get("taints")) == (d.gpu_index == 1)
