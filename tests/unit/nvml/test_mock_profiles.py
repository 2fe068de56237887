"""Shipped mock machine profiles load and describe real node models; bad ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.devices.gpu import MigMode
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.mock import MockBackend, available_machines, load_machine, load_machine_file

EXPECTED = {
    # name: (GPUs, product, NVLink-connected pairs)
    "dgx-h100": (8, "NVIDIA H100 80GB HBM3", 28),
    "dgx-h100-mig": (8, "NVIDIA H100 80GB HBM3", 28),
    "dgx-h100-mixed": (8, "NVIDIA H100 80GB HBM3", 28),
    "dgx-a100": (8, "NVIDIA A100-SXM4-80GB", 28),
    "dgx1-v100": (8, "Tesla V100-SXM2-32GB", 16),
    "hgx-h200": (8, "NVIDIA H200", 28),
    "pcie-l4": (4, "NVIDIA L4", 0),
    "gb200-tray": (4, "NVIDIA GB200", 6),
}

DGX1_LINKS = {
    (0, 3, 2),
    (0, 4, 2),
    (1, 2, 2),
    (1, 5, 2),
    (2, 3, 2),
    (4, 7, 2),
    (5, 6, 2),
    (6, 7, 2),
    (0, 1, 1),
    (0, 2, 1),
    (1, 3, 1),
    (2, 6, 1),
    (3, 7, 1),
    (4, 5, 1),
    (4, 6, 1),
    (5, 7, 1),
}


def test_every_expected_profile_ships() -> None:
    assert sorted(EXPECTED) == available_machines()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_inventory(name: str) -> None:
    gpus, product, pairs = EXPECTED[name]
    inv = MockBackend(load_machine(name), node_name="node-a").inventory()
    assert len(inv.gpus) == gpus
    assert {g.product_name for g in inv.gpus} == {product}
    assert len(inv.topology.linked_pairs()) == pairs
    assert len({g.uuid for g in inv.gpus}) == gpus
    assert len({g.pci_bus_id for g in inv.gpus}) == gpus


def test_dgx1_v100_has_the_exact_hybrid_cube_mesh() -> None:
    topo = MockBackend(load_machine("dgx1-v100"), node_name="n").inventory().topology
    assert set(topo.linked_pairs()) == DGX1_LINKS
    for g in range(8):
        assert sum(n for a, b, n in DGX1_LINKS if g in (a, b)) == 6  # six links per GPU


def test_gb200_clique_is_configurable() -> None:
    prof = load_machine("gb200-tray")
    assert MockBackend(prof, node_name="n").inventory().topology.clique_id == "1"
    other = MockBackend(prof, node_name="n", clique_id="7").inventory().topology
    assert other.clique_id == "7"
    assert other.cluster_uuid is not None


def test_uuids_are_deterministic_per_node_and_index() -> None:
    prof = load_machine("dgx-h100")
    a1 = MockBackend(prof, node_name="a").inventory()
    a2 = MockBackend(prof, node_name="a").inventory()
    b = MockBackend(prof, node_name="b").inventory()
    assert [g.uuid for g in a1.gpus] == [g.uuid for g in a2.gpus]
    assert not {g.uuid for g in a1.gpus} & {g.uuid for g in b.gpus}
    assert all(g.uuid.startswith("GPU-") for g in a1.gpus)


def test_mig_capable_profiles() -> None:
    h100 = MockBackend(load_machine("dgx-h100"), node_name="n").inventory().gpus[0]
    v100 = MockBackend(load_machine("dgx1-v100"), node_name="n").inventory().gpus[0]
    assert (h100.mig_capable, h100.mig_mode, h100.mig_family) == (
        True,
        MigMode.DISABLED,
        "H100-80GB",
    )
    assert (v100.mig_capable, v100.mig_mode) == (False, MigMode.UNSUPPORTED)


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ProfileError) as e:
        load_machine("dgx-z900")
    assert "unknown mock profile 'dgx-z900'" in str(e.value)
    assert "dgx-h100" in str(e.value) and "pcie-l4" in str(e.value)


BASE = """
name: custom
driverVersion: "580.1"
cudaDriverVersion: "13.0"
gpuCount: 2
gpu: {productName: X, brand: NVIDIA, architecture: Hopper, cudaComputeCapability: "9.0",
      memoryMiB: 1000, multiprocessors: 10}
numaNodes: [0, 0]
pcieSwitches: [0, 0]
"""

BAD = {
    "wrong list length": (
        BASE.replace("numaNodes: [0, 0]", "numaNodes: [0]"),
        "numaNodes has 1 entries; gpuCount is 2",
    ),
    "unknown field": (BASE + "gpuCuont: 3\n", "gpuCuont: unknown field"),
    "bad mig family": (
        BASE.replace(
            "multiprocessors: 10}", "multiprocessors: 10, migFamily: Z1, migMode: enabled}"
        ),
        "unknown MIG family 'Z1'; allowed: A100-40GB",
    ),
    "bad enum": (BASE + "sameNumaLevel: FAR\n", "sameNumaLevel: Input should be 'PIX'"),
    "link to missing GPU": (
        BASE + "nvlink: {bandwidthPerLinkGBps: 50, pairs: [[0, 5, 1]]}\n",
        "nvlink pair [0, 5] must name two different GPUs 0..1",
    ),
    "not a mapping": ("- a\n- b\n", "a profile must be a YAML mapping"),
    "not yaml": ("name: [unclosed\n", "not valid YAML"),
    "negative memory": (
        BASE.replace("memoryMiB: 1000", "memoryMiB: -1"),
        "gpu.memoryMiB: Input should be greater than 0",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_profile_file_names_file_field_and_rule(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    f = tmp_path / "custom.yaml"
    f.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_machine_file(f)
    assert str(f) in str(e.value)
    assert message in str(e.value)


def test_valid_custom_profile_file(tmp_path: Path) -> None:
    f = tmp_path / "custom.yaml"
    f.write_text(BASE)
    inv = MockBackend(load_machine_file(f), node_name="n").inventory()
    assert [g.product_name for g in inv.gpus] == ["X", "X"]


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read profile file"):
        load_machine_file(tmp_path / "nope.yaml")


def test_the_mixed_machine_has_mig_on_gpus_1_and_4_to_7() -> None:
    inv = MockBackend(load_machine("dgx-h100-mixed"), node_name="node-a").inventory()
    enabled = [g.index for g in inv.gpus if g.mig_mode.value == "enabled"]
    assert enabled == [1, 4, 5, 6, 7] and all(g.mig_capable for g in inv.gpus)
