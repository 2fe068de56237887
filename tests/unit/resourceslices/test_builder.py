"""The slice builder: attribute names and types, NVLink groups, API limits, splitting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.catalogue.render_gpu import nvlink_groups
from gpudra.devices.inventory import Inventory
from gpudra.devices.timeslice import Interval
from gpudra.nvml.mock import MockBackend, available_machines, load_machine
from gpudra.resourceapi import MAX_ATTRIBUTES_AND_CAPACITIES, MAX_STRING_ATTRIBUTE, semver
from gpudra.resourceslices.builder import desired_slices, slice_name

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def inventory(profile: str, node: str = "node-a") -> Inventory:
    return MockBackend(load_machine(profile), node_name=node).inventory()


@pytest.mark.parametrize(
    ("profile", "groups"),
    [
        ("dgx1-v100", [(0, 1, 2, 3), (4, 5, 6, 7)]),
        ("dgx-h100", [tuple(range(8))]),
        ("gb200-tray", [(0, 1, 2, 3)]),
        ("pcie-l4", []),
    ],
)
def test_nvlink_groups_are_pairwise_linked_cliques(profile: str, groups: list[tuple[int, ...]]):
    topo = inventory(profile).topology
    assert nvlink_groups(topo) == groups
    for g in groups:
        assert all(topo.nvlink_count(a, b) > 0 for a in g for b in g if a != b)


@pytest.mark.parametrize("profile", available_machines())
def test_every_profile_respects_the_api_limits(profile: str) -> None:
    (s,) = desired_slices(build_catalogue(inventory(profile)), driver="gpu.gpudra.io")
    for dev in s["spec"]["devices"]:
        assert len(dev["attributes"]) + len(dev["capacity"]) <= MAX_ATTRIBUTES_AND_CAPACITIES
        for name, value in dev["attributes"].items():
            assert len(value) == 1, name
            if "string" in value:
                assert len(value["string"]) <= MAX_STRING_ATTRIBUTE
            if "version" in value:
                assert SEMVER.match(value["version"]), (name, value)
        assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", dev["name"])


def test_gpu_device_attributes_follow_the_reference_driver() -> None:
    inv = inventory("dgx-h100")
    (s,) = desired_slices(build_catalogue(inv), driver="gpu.gpudra.io")
    dev = s["spec"]["devices"][2]
    gpu = inv.gpus[2]
    assert dev["name"] == "gpu-2"
    a = dev["attributes"]
    assert a["uuid"] == {"string": gpu.uuid}
    assert a["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert a["cudaComputeCapability"] == {"version": "9.0.0"}
    assert a["driverVersion"] == {"version": "580.82.7"}
    assert a["cudaDriverVersion"] == {"version": "13.0.0"}
    assert a["resource.kubernetes.io/pciBusID"] == {"string": "0000:3a:00.0"}
    assert a["index"] == {"int": 2} and a["numaNode"] == {"int": 0}
    assert a["nvlinkGroup"] == {"string": "gpus-0-1-2-3-4-5-6-7"}
    assert a["nvlinkDomain"] == {"string": "nvswitch-0"}
    assert dev["capacity"]["memory"] == {"value": str(81559 * 2**20)}
    assert s["spec"]["pool"] == {"name": "node-a", "generation": 0, "resourceSliceCount": 1}
    assert s["spec"]["nodeName"] == "node-a"


def test_lost_gpus_are_not_advertised(tmp_path: Path) -> None:
    b = MockBackend(load_machine("pcie-l4"), node_name="n", state_file=tmp_path / "s.json")
    b.fall_off_bus(1)
    (s,) = desired_slices(build_catalogue(b.inventory()), driver="gpu.gpudra.io")
    assert [d["name"] for d in s["spec"]["devices"]] == ["gpu-0", "gpu-2", "gpu-3"]


def test_a_lost_dynamic_mig_gpu_publishes_no_placements(tmp_path: Path) -> None:
    b = MockBackend(load_machine("dgx-h100-mig"), node_name="n", state_file=tmp_path / "s.json")
    b.fall_off_bus(2)
    slices = desired_slices(
        build_catalogue(b.inventory(), dynamic=frozenset({1, 2})), driver="gpu.gpudra.io"
    )
    names = [d["name"] for s in slices for d in s["spec"].get("devices") or []]
    assert any(n.startswith("gpu-1-mig-") for n in names)
    assert not [n for n in names if n.startswith("gpu-2")], "a lost GPU's MIG placements"
    counters = [c["name"] for s in slices for c in s["spec"].get("sharedCounters") or []]
    assert counters and not [c for c in counters if "gpu-2" in c]


def test_large_pools_are_split_and_counted() -> None:
    slices = desired_slices(
        build_catalogue(inventory("dgx-h100")), driver="d.example.com", max_devices=3
    )
    assert [len(s["spec"]["devices"]) for s in slices] == [3, 3, 2]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {3}
    assert len({s["metadata"]["name"] for s in slices}) == 3


@pytest.mark.parametrize(
    ("raw", "want"),
    [("580.82.07", "580.82.7"), ("9.0", "9.0.0"), ("13", "13.0.0"), ("12.4.1", "12.4.1")],
)
def test_semver(raw: str, want: str) -> None:
    assert semver(raw) == want


def test_slice_names_are_unique_per_node_and_deterministic() -> None:
    """Names used to fold '.' and truncate the node name, so these pairs got one name and
    the second node never published (issue 13, item 7)."""

    long_a, long_b = "n" * 70 + "-a", "n" * 70 + "-b"
    for a, b in [("gpu.node-1", "gpu-node.1"), (long_a, long_b)]:
        assert slice_name(a, "gpu.gpudra.io", 0) != slice_name(b, "gpu.gpudra.io", 0)
    assert slice_name("n1", "gpu.gpudra.io", 3) == slice_name("n1", "gpu.gpudra.io", 3)
    name = slice_name("x" * 253, "gpu.gpudra.io", 12)
    assert len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


def test_a_gpus_time_slice_is_not_published(tmp_path: Path) -> None:
    """The time slice follows the claims prepared, not the GPU: setting one must not change
    the slices (no attribute, no republish)."""
    backend = MockBackend(load_machine("pcie-l4"), node_name="n", state_file=tmp_path / "s")
    before = desired_slices(build_catalogue(backend.inventory()), driver="gpu.gpudra.io")
    backend.set_time_slice(backend.inventory().gpus[0].uuid, Interval.LONG)
    inv = backend.inventory()
    assert inv.gpus[0].time_slice is Interval.LONG
    assert desired_slices(build_catalogue(inv), driver="gpu.gpudra.io") == before
    assert "Long" not in repr(before)


@pytest.mark.parametrize("profile", ["pcie-l4", "dgx-h100-mig"])
def test_the_standard_numa_attribute_is_published_beside_gpudras(
    profile: str, tmp_path: Path
) -> None:
    b = MockBackend(load_machine(profile), node_name="node-a", state_file=tmp_path / "s")
    inv = b.inventory()
    if inv.gpus[0].mig_mode.value == "enabled":
        b.create_mig_device(inv.gpus[0].uuid, "1g.10gb", 0)
        inv = b.inventory()
    devices = [
        d
        for s in desired_slices(build_catalogue(inv), driver="gpu.gpudra.io")
        for d in s["spec"]["devices"]
    ]
    assert devices
    numa = {g.index: g.numa_node for g in inv.gpus}
    for d in devices:
        attrs = d["attributes"]
        assert attrs["resource.kubernetes.io/numaNode"] == attrs["numaNode"], d["name"]
        index = attrs.get("index", attrs.get("parentIndex"))["int"]
        assert attrs["numaNode"] == {"int": numa[index]}
        assert len(attrs) + len(d.get("capacity", {})) <= MAX_ATTRIBUTES_AND_CAPACITIES
