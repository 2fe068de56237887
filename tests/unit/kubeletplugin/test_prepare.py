"""Planning a prepare from a claim: what gets prepared, and every way a claim can be wrong."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.devices.gpu import MigDevice
from gpudra.kubeletplugin.exclusivity import exclusivity_conflicts
from gpudra.kubeletplugin.prepare import (
    ClaimRef,
    PrepareResult,
    finish,
    resolve_claim,
)
from gpudra.kubeletplugin.prepare_errors import PrepareError
from gpudra.nodestate.checkpoint import PreparedClaim
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE, claim, result

INV = MockBackend(load_machine("dgx-h100"), node_name=NODE).inventory()
CATALOGUE = build_catalogue(INV)
REF = ClaimRef(namespace="ns", name="c", uid="uid-1")


def plan(c: dict[str, Any], dev_root: str | None = None) -> PrepareResult:
    wanted = resolve_claim(c, REF, driver=DRIVER, node_name=NODE, catalogue=CATALOGUE)
    return finish(wanted, {}, catalogue=CATALOGUE, dev_root=dev_root)


def test_devices_cdi_ids_and_base_request_names() -> None:
    p = plan(
        claim(result("gpu-1", "gpus/h100"), result("gpu-5", "gpus/h100"), result("gpu-5", "extra"))
    )
    devs = p.claim.devices
    assert [d.device for d in devs] == ["gpu-1", "gpu-5"]
    assert devs[0].request_names == ("gpus",)
    assert devs[1].request_names == ("extra", "gpus")
    assert devs[0].cdi_device_ids == ("k8s.gpu.gpudra.io/claim=uid-1-gpu-1",)
    assert devs[0].uuid == INV.gpus[1].uuid
    spec = p.cdi_spec
    assert spec["kind"] == "k8s.gpu.gpudra.io/claim"
    assert [d["name"] for d in spec["devices"]] == ["uid-1-gpu-1", "uid-1-gpu-5"]
    env = spec["containerEdits"]["env"]
    assert f"NVIDIA_VISIBLE_DEVICES={INV.gpus[1].uuid},{INV.gpus[5].uuid}" in env
    assert spec["devices"][0]["containerEdits"]["deviceNodes"] == [{"path": "/dev/nvidia1"}]


def test_mock_mode_maps_device_nodes_to_the_fake_dev_root() -> None:
    p = plan(claim(result("gpu-2")), dev_root="/var/lib/gpudra/fake-dev")
    node = p.cdi_spec["devices"][0]["containerEdits"]["deviceNodes"][0]
    assert node == {"path": "/dev/nvidia2", "hostPath": "/var/lib/gpudra/fake-dev/nvidia2"}


def test_foreign_results_are_ignored_when_ours_exist() -> None:
    p = plan(claim(result("gpu-0"), {**result("nic-0"), "driver": "net.example.com"}))
    assert [d.device for d in p.claim.devices] == ["gpu-0"]


BAD = {
    "not allocated": ({"metadata": {"uid": "uid-1"}, "status": {}}, "is not allocated"),
    "other node": (
        claim(result("gpu-0"), node="node-b"),
        "allocated for node node-b, not this node (node-a)",
    ),
    "other driver": (
        claim({**result("gpu-0"), "driver": "x.example.com"}),
        "no devices of driver gpu.gpudra.io (allocated drivers: x.example.com)",
    ),
    "other pool": (
        claim({**result("gpu-0"), "pool": "node-z"}),
        "is in pool 'node-z', not this node's pool 'node-a'",
    ),
    "unknown device": (claim(result("gpu-42")), "unknown device 'gpu-42' on node node-a"),
    "recreated": (claim(result("gpu-0"), uid="uid-2"), "was deleted and recreated"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_claims(case: str) -> None:
    c, message = BAD[case]
    with pytest.raises(PrepareError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(c)


def prepared(
    uid: str, device: str, *, shareable: bool = False, admin: bool = False
) -> PreparedClaim:
    extra: dict[str, Any] = {"shareID": f"s-{uid}"} if shareable else {}
    if admin:
        extra["adminAccess"] = True
    return resolve_claim(
        claim(result(device, **extra), uid=uid),
        ClaimRef("ns", "c", uid),
        driver=DRIVER,
        node_name=NODE,
        catalogue=CATALOGUE,
    )


def test_exclusivity_guard() -> None:
    held = prepared("a", "gpu-3")
    assert exclusivity_conflicts(prepared("b", "gpu-4"), [held]) == []
    assert exclusivity_conflicts(prepared("a", "gpu-3"), [held]) == []  # itself
    (msg,) = exclusivity_conflicts(prepared("b", "gpu-3"), [held])
    assert "gpu-3" in msg and "already prepared for claim ns/c (a)" in msg
    both = exclusivity_conflicts(
        prepared("b", "gpu-3", shareable=True), [prepared("a", "gpu-3", shareable=True)]
    )
    assert both == []
    one = exclusivity_conflicts(prepared("b", "gpu-3", shareable=True), [held])
    assert len(one) == 1


def test_admin_access_neither_blocks_nor_is_blocked() -> None:
    """Upstream: an adminAccess claim ignores ordinary claims to the device, and they ignore
    it; a monitoring pod must not lock workloads out of a GPU (or be locked out)."""
    workload, monitor = prepared("a", "gpu-3"), prepared("m", "gpu-3", admin=True)
    assert monitor.devices[0].admin_access and not monitor.devices[0].shareable
    assert exclusivity_conflicts(monitor, [workload]) == []
    assert exclusivity_conflicts(workload, [monitor]) == []
    # with an admin claim present, two ordinary claims still exclude each other
    assert len(exclusivity_conflicts(prepared("b", "gpu-3"), [monitor, workload])) == 1


MIG_INV = MockBackend(load_machine("dgx-h100-mig"), node_name=NODE).inventory()
MIG_CATALOGUE = build_catalogue(MIG_INV, dynamic=frozenset(range(8)))


def mig_plan(uid: str, device: str) -> PreparedClaim:
    return resolve_claim(
        claim(result(device), uid=uid),
        ClaimRef("ns", "c", uid),
        driver=DRIVER,
        node_name=NODE,
        catalogue=MIG_CATALOGUE,
    )


def test_dynamic_mig_device_waits_for_its_instance() -> None:
    p = mig_plan("m1", "gpu-2-mig-3g40gb-9-0")
    (d,) = p.devices
    assert (d.mig_parent, d.mig_profile, d.mig_start, d.uuid) == (
        MIG_INV.gpus[2].uuid,
        "3g.40gb",
        0,
        "",
    )
    assert d.footprint == tuple(f"{MIG_INV.gpus[2].uuid}/{i}" for i in range(4))
    made = MigDevice(
        uuid="MIG-x",
        parent_uuid=d.mig_parent,
        parent_index=2,
        profile="3g.40gb",
        gpu_instance_id=1,
        compute_instance_id=0,
        placement_start=0,
        placement_size=4,
        capability_minors=(21, 22),
    )
    done = finish(p, {d.device: made}, catalogue=MIG_CATALOGUE, dev_root=None)
    assert done.claim.devices[0].uuid == "MIG-x"
    assert "NVIDIA_VISIBLE_DEVICES=MIG-x" in done.cdi_spec["containerEdits"]["env"]
    nodes = [n["path"] for n in done.cdi_spec["devices"][0]["containerEdits"]["deviceNodes"]]
    assert nodes == [
        "/dev/nvidia2",
        "/dev/nvidia-caps/nvidia-cap21",
        "/dev/nvidia-caps/nvidia-cap22",
    ]


def test_exclusivity_covers_physical_overlap() -> None:
    three = mig_plan("a", "gpu-2-mig-3g40gb-9-0")
    one_inside = mig_plan("b", "gpu-2-mig-1g10gb-19-2")
    one_outside = mig_plan("c", "gpu-2-mig-1g10gb-19-5")
    whole = mig_plan("d", "gpu-2")
    assert exclusivity_conflicts(one_inside, [three])
    assert exclusivity_conflicts(whole, [three])
    assert exclusivity_conflicts(one_outside, [three]) == []
