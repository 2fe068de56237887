"""The real backend's translation of NVML answers, with a fake at the pynvml import seam."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gpudra.devices.gpu import MigMode
from gpudra.devices.topology import PcieLevel
from gpudra.nvml.backend import HealthEventKind
from gpudra.nvml.errors import DeviceNotFound, InvalidArgument, LibraryNotFound
from gpudra.nvml.real import RealBackend
from gpudra.nvml.translate import normalize_bus_id
from tests.unit.nvml.fake_pynvml import (
    NVML_ERROR_GPU_IS_LOST,
    FakeNvml,
    NVMLError,
    switched,
    two_linked,
)


def test_gpu_fields() -> None:
    inv = RealBackend(node_name="n", lib=two_linked()).inventory()
    a, b = inv.gpus
    assert (a.uuid, a.pci_bus_id, a.product_name) == (
        "GPU-a",
        "0000:18:00.0",
        "NVIDIA H100 80GB HBM3",
    )
    assert (a.brand, a.architecture, a.cuda_compute_capability) == ("NVIDIA", "Hopper", "9.0")
    assert a.memory_bytes == 81559 * 2**20
    assert a.multiprocessors == 132  # from the MIG table when NVML cannot say
    assert (a.mig_mode, a.mig_family, b.mig_mode) == (
        MigMode.ENABLED,
        "H100-80GB",
        MigMode.DISABLED,
    )
    assert (inv.driver_version, inv.cuda_driver_version) == ("580.159.04", "13.0")


def test_existing_mig_devices_are_read_with_profile_and_placement() -> None:
    inv = RealBackend(node_name="n", lib=two_linked()).inventory()
    (mig,) = inv.mig_devices
    assert (mig.uuid, mig.parent_uuid, mig.profile, str(mig.placement)) == (
        "MIG-a1",
        "GPU-a",
        "3g.40gb",
        "4:4",
    )


def test_direct_nvlinks_are_counted_once_per_pair() -> None:
    topo = RealBackend(node_name="n", lib=two_linked()).inventory().topology
    assert topo.linked_pairs() == [(0, 1, 4)]
    assert topo.bandwidth_gbps(0, 1) == 200.0
    assert topo.pcie_level(0, 1) is PcieLevel.NODE


def test_nvswitch_links_become_one_domain() -> None:
    topo = RealBackend(node_name="n", lib=switched()).inventory().topology
    assert len(topo.nvswitch_domains) == 1
    assert topo.nvlink_count(0, 7) == 18
    assert topo.pcie_level(0, 7) is PcieLevel.SYS
    assert topo.pcie_level(0, 3) is PcieLevel.NODE


def test_library_missing_gives_the_hint() -> None:
    with pytest.raises(LibraryNotFound, match=r"use --backend mock"):
        RealBackend(node_name="n", lib=FakeNvml([], present=False))


def test_mig_create_checks_then_calls_nvml_in_order() -> None:
    lib = two_linked()
    backend = RealBackend(node_name="n", lib=lib)
    made = backend.create_mig_device("GPU-a", "1g.10gb", 0)
    assert lib.calls == ["create-gi 19 0:1", "create-ci 0"]
    assert (made.profile, str(made.placement)) == ("1g.10gb", "0:1")
    with pytest.raises(InvalidArgument, match=r"overlaps 3g\.40gb at 4:4"):
        backend.create_mig_device("GPU-a", "3g.40gb", 4)
    with pytest.raises(DeviceNotFound):
        backend.create_mig_device("GPU-zzz", "1g.10gb", 0)


def test_mig_destroy_removes_ci_then_gi() -> None:
    lib = two_linked()
    RealBackend(node_name="n", lib=lib).destroy_mig_device("MIG-a1")
    assert lib.calls == ["destroy-ci MIG-a1", "destroy-gi MIG-a1"]


def test_health_events() -> None:
    lib = two_linked()
    backend = RealBackend(node_name="n", lib=lib)
    assert backend.wait_health_event(0.01) is None
    lib.events.append(
        SimpleNamespace(
            device=lib.gpus[1], eventData=79, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
        )
    )
    lib.events.append(NVMLError(NVML_ERROR_GPU_IS_LOST))
    ev = backend.wait_health_event(1)
    assert ev is not None and (ev.kind, ev.gpu_uuid, ev.xid) == (HealthEventKind.XID, "GPU-b", 79)
    lost = backend.wait_health_event(1)
    assert lost is not None and lost.kind is HealthEventKind.GPU_LOST and lost.gpu_uuid is None
    backend.close()
    assert lib.calls[-2:] == ["free-events", "shutdown"]


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("00000000:18:00.0", "0000:18:00.0"),
        (b"00000008:0A:00.0", "0008:0a:00.0"),
        ("0000:18:00.0", "0000:18:00.0"),
    ],
)
def test_bus_id_normalisation(raw: str | bytes, norm: str) -> None:
    assert normalize_bus_id(raw) == norm


def test_mig_capability_minors_from_procfs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gi = tmp_path / "gpu0" / "mig" / "gi1"
    (gi / "ci0").mkdir(parents=True)
    (gi / "access").write_text("DeviceFileMinor: 21\nDeviceFileMode: 444\n")
    (gi / "ci0" / "access").write_text("DeviceFileMinor: 22\nDeviceFileMode: 444\n")
    lib = two_linked()
    lib.gpus[0].migs[0]["gi"] = 1
    inv = RealBackend(node_name="n", lib=lib, capabilities=tmp_path).inventory()
    (mig,) = inv.mig_devices
    assert mig.capability_minors == (21, 22)
    assert mig.capability_nodes == (
        "/dev/nvidia-caps/nvidia-cap21",
        "/dev/nvidia-caps/nvidia-cap22",
    )


def test_xid_ecc_and_lost_events_reach_the_health_source() -> None:
    """NVML's events through the real backend into the fault tracker both daemons use."""
    from gpudra.devices.faults import FaultKind, GpuFaults
    from gpudra.nvml.health_events import apply_event

    lib = two_linked()
    backend = RealBackend(node_name="n", lib=lib)
    inv = backend.inventory()
    assert backend.wait_health_event(0.01) is None  # registers the event set
    xid, dbe, sbe = (
        lib.nvmlEventTypeXidCriticalError,
        lib.nvmlEventTypeDoubleBitEccError,
        lib.nvmlEventTypeSingleBitEccError,
    )
    assert lib.registered_masks and all(m == xid | dbe | sbe for m in lib.registered_masks)
    none = 0xFFFFFFFF
    for event_type, data in ((xid, 79), (dbe, 0), (sbe, 0)):
        lib.events.append(
            SimpleNamespace(
                device=lib.gpus[1],
                eventType=event_type,
                eventData=data,
                gpuInstanceId=none,
                computeInstanceId=none,
            )
        )
    lib.events.append(NVMLError(NVML_ERROR_GPU_IS_LOST))
    faults = GpuFaults(recovery_s=0)
    kinds = []
    for _ in range(4):
        ev = backend.wait_health_event(1)
        assert ev is not None
        kinds.append(ev.kind)
        assert apply_event(faults, ev, inv, now=1.0)
    assert kinds == [
        HealthEventKind.XID,
        HealthEventKind.ECC_DOUBLE_BIT,
        HealthEventKind.ECC_SINGLE_BIT,
        HealthEventKind.GPU_LOST,
    ]
    now = faults.current(1.0)
    assert {(f.kind, f.xid) for f in now["GPU-b"]} == {
        (FaultKind.XID, 79),
        (FaultKind.ECC_DOUBLE_BIT, None),
        (FaultKind.ECC_SINGLE_BIT, None),
        (FaultKind.LOST, None),
    }
    assert {f.kind for f in now["GPU-a"]} == {FaultKind.LOST}  # unattributed: every GPU
    backend.close()
