"""The kubelet's device health stream: every device with its GPU's health (MIG devices follow
their parent), informational faults healthy but named, lost GPUs unhealthy; the broadcast
sends on open, on change and on the heartbeat, and ends when closed or cancelled."""

from __future__ import annotations

import threading
from pathlib import Path

from gpudra.catalogue.catalogue import ServerCapabilities, build_catalogue
from gpudra.devices.faults import Fault, FaultKind, fault_taints
from gpudra.kubeletplugin.health_stream import DeviceHealth, HealthBroadcast, device_health
from gpudra.nvml.mock import MockBackend, load_machine

NODE = "node-a"


def test_devices_follow_their_gpus_faults(tmp_path: Path) -> None:
    b = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=tmp_path / "s")
    b.fall_off_bus(5)
    inv = b.inventory()
    # a lost GPU is in the catalogue with its taint (the daemon's fault tracker gives it)
    lost = fault_taints(
        (Fault(FaultKind.LOST, 1.0),), lost_effect="NoExecute", effect_none=True, room=15
    )
    cat = build_catalogue(inv, capabilities=ServerCapabilities(minor=37), taints={5: tuple(lost)})
    faults = {
        inv.gpus[3].uuid: (Fault(FaultKind.XID, 1.0, 79),),
        inv.gpus[2].uuid: (Fault(FaultKind.XID, 1.0, 13), Fault(FaultKind.ECC_SINGLE_BIT, 2.0)),
    }
    got = {h.device: h for h in device_health(cat, faults, pool=NODE)}
    assert set(got) == set(cat.devices) == {f"gpu-{i}" for i in range(8)}  # lost ones too
    assert all(h.pool == NODE for h in got.values())
    assert [i for i in range(8) if not got[f"gpu-{i}"].healthy] == [3, 5]
    assert "XID 79" in got["gpu-3"].message
    assert got["gpu-5"].message.startswith("GPU lost")
    assert "XID 13" in got["gpu-2"].message and "single-bit ECC" in got["gpu-2"].message
    assert got["gpu-0"].message == ""


def test_mig_devices_follow_their_parent(tmp_path: Path) -> None:
    b = MockBackend(load_machine("dgx-h100-mig"), node_name=NODE, state_file=tmp_path / "s")
    for gpu in (3, 4):
        b.create_mig_device(b.inventory().gpus[gpu].uuid, "3g.40gb", 0)
        b.create_mig_device(b.inventory().gpus[gpu].uuid, "1g.10gb", 4)
    inv = b.inventory()
    cat = build_catalogue(inv, capabilities=ServerCapabilities(minor=37))
    faults = {inv.gpus[3].uuid: (Fault(FaultKind.ECC_DOUBLE_BIT, 1.0),)}
    got = {h.device: h for h in device_health(cat, faults, pool=NODE)}
    by_gpu: dict[int, list[bool]] = {}
    for d in cat.devices.values():
        by_gpu.setdefault(d.gpu_index, []).append(got[d.name].healthy)
    assert by_gpu == {3: [False, False], 4: [True, True]}


def test_long_messages_are_cut_as_the_kubelet_would() -> None:
    from gpudra.kubeletplugin.health_stream import MESSAGE_LIMIT, _message

    many = tuple(Fault(FaultKind.XID, 1.0, x) for x in range(200, 400))
    text = _message(many, lost=False)
    assert len(text) == MESSAGE_LIMIT and text.endswith("...")


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_broadcast_sends_on_open_on_change_and_on_heartbeat() -> None:
    state = [DeviceHealth(NODE, "gpu-0", True, "")]
    clock = Clock()
    hb = HealthBroadcast(lambda: tuple(state), heartbeat_s=10, clock=clock)
    assert hb.timeout_s == 30
    active = threading.Event()
    active.set()
    got: list[tuple[DeviceHealth, ...]] = []
    sent = threading.Semaphore(0)

    def run() -> None:
        for snap in hb.watch(active=active.is_set):
            got.append(snap)
            sent.release()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert sent.acquire(timeout=5) and got[-1][0].healthy  # on open
    assert hb.streams == 1
    state[0] = DeviceHealth(NODE, "gpu-0", False, "XID 79")
    hb.changed()
    assert sent.acquire(timeout=5) and not got[-1][0].healthy  # on change
    assert not sent.acquire(timeout=1.5)  # nothing changed, heartbeat not due
    clock.t = 10.5  # the heartbeat is due: sent within the one-second re-check
    assert sent.acquire(timeout=5) and len(got) == 3
    hb.close()
    t.join(5)
    assert not t.is_alive() and hb.streams == 0


def test_a_cancelled_stream_ends_without_a_change() -> None:
    hb = HealthBroadcast(lambda: (), heartbeat_s=60)
    active = threading.Event()
    active.set()
    n = []
    t = threading.Thread(
        target=lambda: [n.append(s) for s in hb.watch(active=active.is_set)], daemon=True
    )
    t.start()
    active.clear()  # the kubelet went away
    t.join(5)
    assert not t.is_alive() and len(n) == 1 and hb.streams == 0
