"""Resources and device IDs per MIG strategy and time-slicing, NVIDIA's names and rules."""

from __future__ import annotations

from pathlib import Path

from gpudra.deviceplugin.advertise import layout
from gpudra.deviceplugin.config import parse_config
from tests.unit.deviceplugin.nodes import SEVEN_1G, catalogue, mock, with_migs

GPU = "nvidia.com/gpu"


def counts(lay) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {r.name: len(r.devices) for r in lay.resources}


def test_whole_gpus_are_advertised_by_uuid_with_their_numa_node() -> None:
    c = catalogue(mock("dgx-h100"))
    lay = layout(c, resource_name=GPU, mig_strategy="none")
    (r,) = lay.resources
    assert r.name == GPU and r.whole_gpus and not r.shared
    assert [d.id for d in r.devices] == [g.uuid for g in c.inventory.gpus]
    assert [d.numa_node for d in r.devices] == [g.numa_node for g in c.inventory.gpus]
    assert [d.index for d in r.devices] == [str(i) for i in range(8)]
    assert all(len(d.id) <= 63 for d in r.devices)


def test_mig_strategies_on_static_instances(tmp_path: Path) -> None:
    b = with_migs(mock("dgx-h100-mig", tmp_path / "s.json"), SEVEN_1G)
    c = catalogue(b)
    assert counts(layout(c, resource_name=GPU, mig_strategy="single")) == {GPU: 56}
    mixed = layout(c, resource_name=GPU, mig_strategy="mixed")
    assert counts(mixed) == {GPU: 0, "nvidia.com/mig-1g.10gb": 56}
    mig = mixed.resource("nvidia.com/mig-1g.10gb")
    assert mig is not None and not mig.whole_gpus
    assert mig.devices[0].id.startswith("MIG-") and mig.devices[8].index == "1:1"
    none = layout(c, resource_name=GPU, mig_strategy="none")
    assert counts(none) == {GPU: 0}
    assert "are in MIG mode: migStrategy none advertises whole GPUs only" in none.notes[0]


def test_mixed_profiles_get_one_resource_each_with_plus_as_dot(tmp_path: Path) -> None:
    b = with_migs(
        mock("dgx-h100-mixed", tmp_path / "s.json"),
        {1: [("3g.40gb", 0), ("2g.20gb", 4)], 4: [("1g.10gb", 0)], 5: [("7g.80gb", 0)]},
    )
    lay = layout(catalogue(b), resource_name=GPU, mig_strategy="mixed")
    assert counts(lay) == {
        GPU: 3,
        "nvidia.com/mig-1g.10gb": 1,
        "nvidia.com/mig-2g.20gb": 1,
        "nvidia.com/mig-3g.40gb": 1,
        "nvidia.com/mig-7g.80gb": 1,
    }
    assert lay.problems == ()
    assert "migStrategy mixed: MIG GPU 6 has no MIG devices" in lay.notes


def test_single_refuses_an_inconsistent_node_and_advertises_nothing_wrong(tmp_path: Path) -> None:
    b = with_migs(
        mock("dgx-h100-mig", tmp_path / "s.json"), {0: [("1g.10gb", 0)], 1: [("2g.20gb", 0)]}
    )
    lay = layout(catalogue(b), resource_name=GPU, mig_strategy="single")
    assert counts(lay) == {GPU: 0}
    assert lay.problems == (
        "migStrategy single: the MIG devices have different profiles (1g.10gb, 2g.20gb); "
        "single needs one profile on the whole node (use mixed)",
        "migStrategy single: MIG GPU(s) 2,3,4,5,6,7 have no MIG devices",
    )
    mixed = with_migs(mock("dgx-h100-mixed", tmp_path / "m.json"), {1: [("1g.10gb", 0)]})
    lay = layout(catalogue(mixed), resource_name=GPU, mig_strategy="single")
    assert counts(lay) == {GPU: 0}
    assert lay.problems[0].startswith(
        "migStrategy single: GPU(s) 0,2,3 are not in MIG mode but GPU(s) 1,4,5,6,7 are"
    )


def test_single_on_a_node_without_mig_advertises_its_whole_gpus() -> None:
    lay = layout(catalogue(mock("dgx-h100")), resource_name=GPU, mig_strategy="single")
    assert counts(lay) == {GPU: 8} and lay.problems == ()


def ts(text: str):  # type: ignore[no-untyped-def]
    return parse_config("version: v1\nsharing:\n  timeSlicing:\n" + text, source="t").time_slicing


def test_time_slicing_replicas_are_uuid_colon_colon_n() -> None:
    c = catalogue(mock("dgx-h100"))
    lay = layout(
        c,
        resource_name=GPU,
        mig_strategy="none",
        time_slicing=ts("    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n"),
    )
    (r,) = lay.resources
    assert len(r.devices) == 32 and r.shared and not r.whole_gpus
    first = c.inventory.gpus[0].uuid
    assert [d.id for d in r.devices[:4]] == [f"{first}::{n}" for n in range(4)]


def test_rename_by_default_and_per_resource_rename_and_device_lists() -> None:
    c = catalogue(mock("dgx-h100"))
    renamed = layout(
        c,
        resource_name=GPU,
        mig_strategy="none",
        time_slicing=ts(
            "    renameByDefault: true\n    resources:\n    - name: nvidia.com/gpu\n"
            "      replicas: 2\n"
        ),
    )
    assert counts(renamed) == {GPU: 0, "nvidia.com/gpu.shared": 16}
    some = layout(
        c,
        resource_name=GPU,
        mig_strategy="none",
        time_slicing=ts(
            "    resources:\n    - name: nvidia.com/gpu\n      rename: nvidia.com/gpu-shared\n"
            f'      devices: [0, "{c.inventory.gpus[3].uuid}"]\n      replicas: 3\n'
        ),
    )
    assert counts(some) == {GPU: 6, "nvidia.com/gpu-shared": 6}
    shared = some.resource("nvidia.com/gpu-shared")
    assert shared is not None and {d.gpu_index for d in shared.devices} == {0, 3}
    count = layout(
        c,
        resource_name=GPU,
        mig_strategy="none",
        time_slicing=ts(
            "    resources:\n    - name: nvidia.com/gpu\n      devices: 2\n      replicas: 5\n"
        ),
    )
    assert counts(count) == {GPU: 6 + 10}


def test_time_slicing_a_resource_the_node_lacks_is_noted() -> None:
    lay = layout(
        catalogue(mock("dgx-h100")),
        resource_name=GPU,
        mig_strategy="none",
        time_slicing=ts("    resources:\n    - name: nvidia.com/mig-1g.10gb\n      replicas: 2\n"),
    )
    assert counts(lay) == {GPU: 8}
    assert lay.notes == (
        "sharing.timeSlicing: resource nvidia.com/mig-1g.10gb is not advertised on this node "
        "(advertised: nvidia.com/gpu)",
    )


def test_only_the_served_gpus_are_advertised() -> None:
    lay = layout(
        catalogue(mock("dgx-h100"), served=frozenset({4, 5, 6, 7})),
        resource_name=GPU,
        mig_strategy="none",
    )
    assert [d.gpu_index for d in lay.resources[0].devices] == [4, 5, 6, 7]
