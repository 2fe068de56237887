"""Shared GPUs (KEP-5075 consumable capacity): the device a shared GPU publishes, which GPUs
are shared (the modes' precedence and the server's version), and the API's rules for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpudra.catalogue.catalogue import (
    CONSUMABLE_SINCE_MINOR,
    DeviceKind,
    GpuMode,
    ServerCapabilities,
    build_catalogue,
)
from gpudra.catalogue.render_shared import MAX_SHARES, memory_capacity, shared_gpu_device
from gpudra.devices.inventory import Inventory
from gpudra.kubetypes.quantity import Quantity
from gpudra.nvml.mock import MockBackend, available_machines, load_machine
from gpudra.resourceapi import MANAGED_TAINT, MAX_ATTRIBUTES_AND_CAPACITIES
from gpudra.resourceslices.builder import desired_slices
from gpudra_testkit.builders import DRIVER, profile_slices

MIB = 1024 * 1024
H100_MIB = 81559  # dgx-h100's memoryMiB
ALL8 = frozenset(range(8))


def node(profile: str = "dgx-h100", tmp_path: Path | None = None) -> Inventory:
    state = tmp_path / "s.json" if tmp_path else None
    return MockBackend(load_machine(profile), node_name="n", state_file=state).inventory()


def ranged(value: str, default: str, low: str, high: str, step: str) -> dict[str, Any]:
    return {
        "value": value,
        "requestPolicy": {
            "default": default,
            "validRange": {"min": low, "max": high, "step": step},
        },
    }


@pytest.mark.parametrize(
    ("shares", "capacity"),
    [
        (
            0,
            {
                "memory": ranged(
                    str(H100_MIB * MIB), str(H100_MIB * MIB), "1Mi", str(H100_MIB * MIB), "1Mi"
                ),
                "multiprocessors": ranged("132", "0", "0", "132", "1"),
            },
        ),
        (
            4,
            {
                # 81559 // 4 = 20389 MiB: four claims that ask for nothing fit exactly
                "memory": ranged(
                    str(H100_MIB * MIB), str(20389 * MIB), "1Mi", str(H100_MIB * MIB), "1Mi"
                ),
                "multiprocessors": ranged("132", "0", "0", "132", "1"),
                "shares": ranged("4", "1", "1", "4", "1"),
            },
        ),
    ],
    ids=["no shares", "4 shares"],
)
def test_a_shared_gpu_is_the_whole_gpu_with_consumable_capacity(
    shares: int, capacity: dict[str, Any]
) -> None:
    inv = node()
    plain = build_catalogue(inv).published(inv.gpus[0])
    c = build_catalogue(inv, shared=frozenset({0}), shares=shares)
    assert c.modes[0] is GpuMode.SHARED and set(c.modes[1:]) == {GpuMode.WHOLE}
    (dev,) = c.published(inv.gpus[0])
    assert dev == {
        "name": "gpu-0",
        "attributes": plain[0]["attributes"],
        "capacity": capacity,
        "allowMultipleAllocations": True,
    }
    assert 20389 * MIB == 21379416064
    # prepared as a whole GPU: same kind, device nodes and footprint
    whole = build_catalogue(inv).devices["gpu-0"]
    shared = c.devices["gpu-0"]
    assert (shared.kind, shared.uuid, shared.device_nodes, shared.footprint) == (
        DeviceKind.GPU,
        whole.uuid,
        whole.device_nodes,
        whole.footprint,
    )
    assert c.published(inv.gpus[1]) == build_catalogue(inv).published(inv.gpus[1])


@pytest.mark.parametrize(
    ("minor", "shared"),
    [(34, False), (35, False), (CONSUMABLE_SINCE_MINOR, True), (37, True), (None, True)],
    ids=["1.34", "1.35", "1.36", "1.37", "unknown"],
)
def test_only_a_server_with_consumable_capacity_gets_shared_gpus(
    minor: int | None, shared: bool
) -> None:
    caps = ServerCapabilities(minor=minor)
    assert caps.consumable is shared
    c = build_catalogue(node(), shared=frozenset({0, 2}), shares=2, capabilities=caps)
    want = GpuMode.SHARED if shared else GpuMode.WHOLE
    assert [c.modes[i] for i in (0, 2)] == [want, want]
    assert c.shared_refused == (frozenset() if shared else frozenset({0, 2}))
    dev = c.devices["gpu-0"].slice_device
    assert dev is not None
    assert ("allowMultipleAllocations" in dev) is shared
    assert ("requestPolicy" in dev["capacity"]["memory"]) is shared


def test_mig_modes_win_over_shared(tmp_path: Path) -> None:
    """On dgx-h100-mixed GPUs 1, 4-7 are in MIG mode: a MIG-enabled GPU stays static MIG,
    dynamic MIG wins where asked for, and the rest of --shared-gpus is shared."""
    inv = node("dgx-h100-mixed", tmp_path)
    c = build_catalogue(
        inv,
        shared=ALL8,
        dynamic=frozenset({0}),
        capabilities=ServerCapabilities(minor=37),
    )
    assert c.modes == (
        GpuMode.DYNAMIC_MIG,
        GpuMode.STATIC_MIG,
        GpuMode.SHARED,
        GpuMode.SHARED,
        *[GpuMode.STATIC_MIG] * 4,
    )
    assert c.shared_refused == frozenset({0, 1, 4, 5, 6, 7})
    assert "allowMultipleAllocations" not in (c.devices["gpu-0"].slice_device or {})
    # on 1.34 dynamic MIG falls back to static MIG, still not shared
    old = build_catalogue(
        inv, shared=ALL8, dynamic=frozenset({0}), capabilities=ServerCapabilities(minor=34)
    )
    assert old.modes[0] is GpuMode.WHOLE  # gpu 0 has MIG mode off: whole, as without either
    assert old.shared_refused == ALL8


def test_an_unserved_gpu_is_neither_shared_nor_refused() -> None:
    c = build_catalogue(node(), shared=frozenset({0, 1}), served=frozenset({1, 2}))
    assert c.shared_refused == frozenset()
    assert not any(d.gpu_index == 0 for d in c.devices.values())
    assert c.gpus_in(GpuMode.SHARED) == [node().gpus[1]]


def test_a_shared_gpu_carries_its_taints() -> None:
    fault = {"key": "gpu.gpudra.io/xid", "value": "79", "effect": "NoSchedule"}
    c = build_catalogue(node(), shared=frozenset({3}), managed=frozenset({3}), taints={3: [fault]})
    dev = c.devices["gpu-3"].slice_device
    assert dev is not None and dev["allowMultipleAllocations"] is True
    assert dev["taints"] == [dict(MANAGED_TAINT), fault]


def test_the_published_slices_carry_the_shared_device() -> None:
    c = build_catalogue(node(), shared=frozenset({0, 5}), shares=8)
    devices = [d for s in desired_slices(c, driver=DRIVER) for d in s["spec"]["devices"]]
    assert sorted(d["name"] for d in devices) == [f"gpu-{i}" for i in range(8)]
    multi = {d["name"] for d in devices if d.get("allowMultipleAllocations") is True}
    assert multi == {"gpu-0", "gpu-5"}
    assert [d["name"] for d in devices] == [d["name"] for d in c.published()]


def q(text: str) -> int:
    """A published quantity as an integer (the API's parser must take it too)."""
    Quantity.parse(text)
    return int(text[:-2]) * MIB if text.endswith("Mi") else int(text)


def api_problems(cap: dict[str, Any]) -> list[str]:
    """kubernetes pkg/apis/resource/validation validateRequestPolicyRange, for one capacity."""
    value, policy = q(cap["value"]), cap["requestPolicy"]
    r = policy["validRange"]
    default, low, high, step = q(policy["default"]), q(r["min"]), q(r["max"]), q(r["step"])
    checks = {
        "min <= value": low <= value,
        "default >= min": default >= low,
        "min <= max": low <= high,
        "max <= value": high <= value,
        "default <= max": default <= high,
        "min + step <= value": low + step <= value,
        "default a whole step from min": (default - low) % step == 0,
        "max a whole step from min": (high - low) % step == 0,
    }
    return [name for name, ok in checks.items() if not ok]


@pytest.mark.parametrize("profile", available_machines())
@pytest.mark.parametrize("shares", [0, 2, 7, MAX_SHARES])
def test_every_profile_publishes_shared_gpus_the_api_server_accepts(
    profile: str, shares: int
) -> None:
    inv = node(profile)
    c = build_catalogue(inv, shared=frozenset(g.index for g in inv.gpus), shares=shares)
    for g in c.gpus_in(GpuMode.SHARED):
        (dev,) = c.published(g)
        assert len(dev["attributes"]) + len(dev["capacity"]) <= MAX_ATTRIBUTES_AND_CAPACITIES
        for name, cap in dev["capacity"].items():
            assert api_problems(cap) == [], (profile, g.index, name)
        if shares:  # N claims that ask for nothing fit in the memory
            default = q(dev["capacity"]["memory"]["requestPolicy"]["default"])
            assert shares * default <= g.memory_bytes


def test_memory_that_is_not_whole_mib_offers_the_whole_mib_below_it() -> None:
    cap = memory_capacity(10 * MIB + 123, 3)
    assert cap["value"] == str(10 * MIB + 123)
    assert cap["requestPolicy"]["validRange"]["max"] == str(10 * MIB)
    assert cap["requestPolicy"]["default"] == str(3 * MIB)
    assert api_problems(cap) == []


@pytest.mark.parametrize("shares", [1, -1, MAX_SHARES + 1])
def test_a_share_count_the_settings_refuse_is_refused_here_too(shares: int) -> None:
    inv = node()
    with pytest.raises(ValueError, match=f"0 or 2..{MAX_SHARES}"):
        shared_gpu_device(inv, inv.gpus[0], {}, shares=shares)


def test_the_testkit_publishes_shared_gpus_as_the_daemon_does() -> None:
    slices = profile_slices("dgx-h100", "n", shared=frozenset({1}), shares=4)
    c = build_catalogue(node(), shared=frozenset({1}), shares=4)
    assert slices == desired_slices(c, driver=DRIVER)
    (dev,) = [d for s in slices for d in s["spec"]["devices"] if d["name"] == "gpu-1"]
    assert dev["allowMultipleAllocations"] is True and dev["capacity"]["shares"]["value"] == "4"
