"""The real backend isolates a failing GPU: one lost (or erroring) GPU is reported LOST and
the node's other GPUs keep working; a busy MIG instance refuses destroy with InUse."""

from __future__ import annotations

import logging

import pytest

from gpudra.devices.gpu import Health
from gpudra.devices.topology import PcieLevel
from gpudra.nvml.errors import GpuLost, InUse
from gpudra.nvml.real import RealBackend
from gpudra.nvml.translate import UNREADABLE_UUID
from tests.unit.nvml.fake_pynvml import NVML_ERROR_UNKNOWN, switched, two_linked


def test_a_gpu_lost_after_a_good_read_keeps_its_identity() -> None:
    lib = switched(8)
    backend = RealBackend(node_name="n", lib=lib)
    before = backend.inventory().gpus[3]
    lib.gpus[3].lost = True
    inv = backend.inventory()
    lost = inv.gpus[3]
    assert lost.health is Health.LOST
    assert (lost.uuid, lost.minor, lost.product_name) == (
        before.uuid,
        before.minor,
        before.product_name,
    )
    assert [g.health for g in inv.gpus if g.index != 3] == [Health.HEALTHY] * 7
    assert [g.uuid for g in inv.gpus] == [f"GPU-{i}" for i in range(8)]


def test_topology_keeps_the_indices_of_the_gpus_around_a_lost_one() -> None:
    lib = switched(8)
    lib.gpus[3].lost = True
    topo = RealBackend(node_name="n", lib=lib).inventory().topology
    assert topo.gpu_count == 8
    (domain,) = topo.nvswitch_domains
    assert domain.gpus == (0, 1, 2, 4, 5, 6, 7)
    assert topo.nvlink_count(0, 7) == 18 and topo.nvlink_count(2, 4) == 18
    assert topo.nvlink_count(0, 3) == 0 and topo.peers(3) == []
    assert all(3 not in (p.a, p.b) for p in topo.pcie)
    # PCIe pairs by GPU index, not by position among the readable GPUs
    assert topo.pcie_level(4, 5) is PcieLevel.NODE
    assert topo.pcie_level(2, 4) is PcieLevel.SYS
    assert topo.pcie_level(0, 2) is PcieLevel.NODE


def test_a_gpu_lost_before_its_first_read_gets_a_placeholder_record() -> None:
    lib = switched(8)
    lib.gpus[3].lost = True
    backend = RealBackend(node_name="n", lib=lib)  # neither this nor inventory() raises
    inv = backend.inventory()
    lost = inv.gpus[3]
    assert lost.health is Health.LOST
    assert lost.uuid == UNREADABLE_UUID.format(index=3)
    assert lost.minor == 3  # not taken by another GPU
    assert [g.health for g in inv.gpus if g.index != 3] == [Health.HEALTHY] * 7


def test_an_unknown_error_on_one_read_marks_only_that_gpu() -> None:
    lib = switched(8)
    lib.gpus[5].fail["nvmlDeviceGetMemoryInfo"] = NVML_ERROR_UNKNOWN
    inv = RealBackend(node_name="n", lib=lib).inventory()
    bad = inv.gpus[5]
    # what NVML still answers is kept
    assert (bad.health, bad.uuid, bad.minor, bad.pci_bus_id) == (
        Health.LOST,
        "GPU-5",
        5,
        "0000:15:00.0",
    )
    assert [g.health for g in inv.gpus if g.index != 5] == [Health.HEALTHY] * 7


def test_a_lost_gpu_has_no_mig_devices_and_refuses_create() -> None:
    lib = two_linked()
    backend = RealBackend(node_name="n", lib=lib)
    assert [m.uuid for m in backend.inventory().mig_devices] == ["MIG-a1"]
    lib.gpus[0].lost = True
    inv = backend.inventory()
    assert (inv.gpus[0].uuid, inv.gpus[0].health) == ("GPU-a", Health.LOST)
    assert inv.mig_devices == ()
    assert inv.gpus[1].health is Health.HEALTHY
    with pytest.raises(GpuLost, match=r"GPU 0 \(GPU-a\) is lost"):
        backend.create_mig_device("GPU-a", "1g.10gb", 0)
    with pytest.raises(GpuLost):
        backend.destroy_mig_device("MIG-a1")


def test_a_gpu_that_answers_again_is_healthy_and_transitions_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lib = switched(4)
    backend = RealBackend(node_name="n", lib=lib)
    backend.inventory()
    lib.gpus[2].lost = True
    with caplog.at_level(logging.INFO, logger="gpudra.nvml.real"):
        backend.inventory()
        backend.inventory()
        lib.gpus[2].lost = False
        inv = backend.inventory()
        backend.inventory()
    assert inv.gpus[2].health is Health.HEALTHY
    lost, back = (r.getMessage() for r in caplog.records)  # one line per transition
    assert lost.startswith("GPU 2 (GPU-2) is lost") and "NVML error 15" in lost
    assert back.startswith("GPU 2 (GPU-2) answers again")


def test_health_events_still_work_with_a_lost_gpu() -> None:
    lib = two_linked()
    lib.gpus[0].lost = True
    backend = RealBackend(node_name="n", lib=lib)
    assert backend.wait_health_event(0.01) is None
    assert lib.calls == ["register GPU-b"]


def test_destroying_a_busy_mig_device_raises_in_use() -> None:
    lib = two_linked()
    backend = RealBackend(node_name="n", lib=lib)
    lib.gpus[0].migs[0]["busy"] = True
    with pytest.raises(InUse, match="destroy compute instance of MIG-a1") as caught:
        backend.destroy_mig_device("MIG-a1")
    assert caught.value.retryable
    assert [m.uuid for m in backend.inventory().mig_devices] == ["MIG-a1"]
    lib.gpus[0].migs[0]["busy"] = False
    backend.destroy_mig_device("MIG-a1")
    assert backend.inventory().mig_devices == ()
