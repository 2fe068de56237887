"""Dynamic MIG slices: counters in their own slice, placements consume memory slices, limits."""

from __future__ import annotations

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import MAX_ATTRIBUTES_AND_CAPACITIES, MAX_DEVICES_PER_SLICE_ADVANCED
from gpudra.resourceslices.builder import desired_slices


def slices(dynamic: frozenset[int]) -> list[dict]:
    inv = MockBackend(load_machine("dgx-h100-mig"), node_name="n").inventory()
    return desired_slices(build_catalogue(inv, dynamic=dynamic), driver="gpu.gpudra.io")


def test_layout_for_eight_dynamic_gpus() -> None:
    out = slices(frozenset(range(8)))
    assert len(out) == 9 and {s["spec"]["pool"]["resourceSliceCount"] for s in out} == {9}
    counter_slices = [s for s in out if "sharedCounters" in s["spec"]]
    assert len(counter_slices) == 1 and "devices" not in counter_slices[0]["spec"]  # 1.35+ rule
    assert len(counter_slices[0]["spec"]["sharedCounters"]) == 8
    for s in out:
        devices = s["spec"].get("devices", [])
        assert len(devices) <= MAX_DEVICES_PER_SLICE_ADVANCED
        for d in devices:
            assert len(d["attributes"]) + len(d["capacity"]) <= MAX_ATTRIBUTES_AND_CAPACITIES
            assert len(d["consumesCounters"]) <= 2


def test_placements_consume_exactly_their_memory_slices() -> None:
    out = slices(frozenset({0}))
    gpu0 = next(s for s in out if any(d["name"] == "gpu-0" for d in s["spec"].get("devices", [])))
    by_name = {d["name"]: d for d in gpu0["spec"]["devices"]}
    assert len(by_name) == 26
    whole = by_name["gpu-0"]["consumesCounters"][0]["counters"]
    assert sorted(whole) == [f"memory-slice-{i}" for i in range(8)]
    three = by_name["gpu-0-mig-3g40gb-9-4"]
    assert sorted(three["consumesCounters"][0]["counters"]) == [
        "memory-slice-4",
        "memory-slice-5",
        "memory-slice-6",
        "memory-slice-7",
    ]
    assert three["attributes"]["type"] == {"string": "mig"}
    assert three["capacity"]["multiprocessors"] == {"value": "60"}
    assert "gpu-0-mig-1g10gb-me-20-3" in by_name
    # the other seven are MIG-enabled but not dynamic: static MIG, and they have no instances,
    # so they publish nothing (not even the whole GPU, which CUDA could not use in MIG mode)
    names = {d["name"] for s in out for d in s["spec"].get("devices", [])}
    assert not any(n.startswith("gpu-1") for n in names)


def test_static_mig_publishes_existing_instances_with_uuids(tmp_path) -> None:
    b = MockBackend(load_machine("dgx-h100-mig"), node_name="n", state_file=tmp_path / "s.json")
    gpu = b.inventory().gpus[1]
    made = b.create_mig_device(gpu.uuid, "2g.20gb", 2)
    out = desired_slices(build_catalogue(b.inventory()), driver="gpu.gpudra.io")
    devices = {d["name"]: d for s in out for d in s["spec"].get("devices", [])}
    static = devices["gpu-1-mig-2g20gb-14-2"]
    assert static["attributes"]["uuid"] == {"string": made.uuid}
    assert "consumesCounters" not in static
    assert "gpu-1" not in devices and len(devices) == 1
