"""The CDI spec of one prepared claim, as data: its shape for the CDI version it declares, the
fully qualified device ids the kubelet hands to the runtime, and device-node mapping."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gpudra.cdi.spec import (
    CDI_VERSION,
    CLAIM_ANNOTATION,
    CLAIM_UID_ANNOTATION,
    CONTROL_NODES,
    DEVICES_ANNOTATION,
    KIND,
    CdiDevice,
    claim_spec,
    device_id,
    spec_file_name,
)

UID = "8c5e3b1a-3f2d-4c1e-9a7b-2d4f6e8a0b1c"
GPU = CdiDevice("gpu-3", "GPU-aaaa", ("/dev/nvidia3",))
MIG = CdiDevice(
    "gpu-0-mig-1g10gb-19-2",
    "MIG-bbbb",
    ("/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap12"),
)

# The qualified-name grammar of the CDI reference implementation, `<vendor>/<class>=<name>`:
# vendor and class start with a letter, end with a letter or digit, and may hold ``_ - .``
# between; a device name starts and ends with a letter or digit and may also hold ``:``.
# https://github.com/cncf-tags/container-device-interface/blob/main/pkg/parser/parser.go
VENDOR_OR_CLASS = re.compile(r"[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
DEVICE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?")

# The fields CDI 0.6.0 defines at each level (SPEC.md of that release); anything else makes
# a strict runtime refuse the spec.
# https://github.com/cncf-tags/container-device-interface/blob/v0.6.0/SPEC.md
SPEC_FIELDS = {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}
DEVICE_FIELDS = {"name", "annotations", "containerEdits"}
EDIT_FIELDS = {"env", "deviceNodes", "hooks", "mounts"}
NODE_FIELDS = {
    "path",
    "hostPath",
    "type",
    "major",
    "minor",
    "fileMode",
    "permissions",
    "uid",
    "gid",
}


def spec(*devices: CdiDevice, dev_root: str | None = None, **kw: Any) -> dict[str, Any]:
    return claim_spec(
        claim_uid=UID,
        namespace="team-a",
        name="train",
        devices=list(devices),
        dev_root=dev_root,
        **kw,
    )


def qualified(device: str) -> tuple[str, str, str]:
    """Split and check a fully qualified CDI device id as a runtime would."""
    kind, _, name = device.partition("=")
    vendor, _, cls = kind.partition("/")
    for part, rule in ((vendor, VENDOR_OR_CLASS), (cls, VENDOR_OR_CLASS), (name, DEVICE_NAME)):
        assert rule.fullmatch(part), f"{part!r} of {device!r} breaks the CDI name grammar"
    return vendor, cls, name


def test_spec_has_only_the_fields_its_cdi_version_defines() -> None:
    s = spec(GPU, MIG, annotations={DEVICES_ANNOTATION: "[]"})

    assert s["cdiVersion"] == CDI_VERSION == "0.6.0"  # 0.6.0 is the first with annotations
    assert set(s) <= SPEC_FIELDS
    assert set(s["containerEdits"]) <= EDIT_FIELDS
    for d in s["devices"]:
        assert set(d) <= DEVICE_FIELDS
        assert set(d["containerEdits"]) <= EDIT_FIELDS
    nodes = s["containerEdits"]["deviceNodes"] + [
        n for d in s["devices"] for n in d["containerEdits"]["deviceNodes"]
    ]
    assert all(set(n) <= NODE_FIELDS for n in nodes)


@pytest.mark.parametrize("device", [GPU, MIG], ids=["gpu", "mig"])
def test_device_ids_are_qualified_names_a_runtime_accepts(device: CdiDevice) -> None:
    s = spec(device)
    (entry,) = s["devices"]

    vendor, cls, name = qualified(device_id(UID, device.name))

    assert f"{vendor}/{cls}" == s["kind"] == KIND
    assert name == entry["name"] == f"{UID}-{device.name}"


def test_two_claims_with_the_same_device_never_share_an_id() -> None:
    assert device_id("uid-1", "gpu-0") != device_id("uid-2", "gpu-0")
    assert spec_file_name("uid-1") != spec_file_name("uid-2")


def test_claim_wide_edits_name_every_uuid_and_the_claim() -> None:
    s = spec(GPU, MIG)

    assert s["containerEdits"]["env"] == [
        "NVIDIA_VISIBLE_DEVICES=GPU-aaaa,MIG-bbbb",
        "GPUDRA_CLAIM=team-a/train",
    ]
    assert [n["path"] for n in s["containerEdits"]["deviceNodes"]] == list(CONTROL_NODES)


def test_each_device_brings_its_own_nodes_and_variable() -> None:
    gpu, mig = spec(GPU, MIG)["devices"]

    assert gpu["containerEdits"] == {
        "env": ["GPUDRA_DEVICE_GPU_3=GPU-aaaa"],
        "deviceNodes": [{"path": "/dev/nvidia3"}],
    }
    assert mig["containerEdits"]["env"] == ["GPUDRA_DEVICE_GPU_0_MIG_1G10GB_19_2=MIG-bbbb"]
    assert [n["path"] for n in mig["containerEdits"]["deviceNodes"]] == list(MIG.device_nodes)


def test_real_mode_uses_the_host_nodes_at_the_same_paths() -> None:
    s = spec(GPU, MIG, dev_root=None)
    nodes = s["containerEdits"]["deviceNodes"] + [
        n for d in s["devices"] for n in d["containerEdits"]["deviceNodes"]
    ]
    assert all("hostPath" not in n for n in nodes)


@pytest.mark.parametrize("dev_root", ["/var/lib/gpudra/dev", "/var/lib/gpudra/dev/"])
def test_mock_mode_maps_every_node_to_a_file_under_dev_root(dev_root: str) -> None:
    s = spec(MIG, dev_root=dev_root)
    (mig,) = s["devices"]

    assert s["containerEdits"]["deviceNodes"][0] == {
        "path": "/dev/nvidiactl",
        "hostPath": "/var/lib/gpudra/dev/nvidiactl",
    }
    # the container path stays; the host file is the node's basename under dev_root
    assert mig["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia0", "hostPath": "/var/lib/gpudra/dev/nvidia0"},
        {
            "path": "/dev/nvidia-caps/nvidia-cap12",
            "hostPath": "/var/lib/gpudra/dev/nvidia-cap12",
        },
    ]


def test_annotations_record_the_claim_and_what_the_caller_adds() -> None:
    s = spec(GPU, annotations={DEVICES_ANNOTATION: '[{"device": "gpu-3"}]'})

    assert s["annotations"] == {
        CLAIM_UID_ANNOTATION: UID,
        CLAIM_ANNOTATION: "team-a/train",
        DEVICES_ANNOTATION: '[{"device": "gpu-3"}]',
    }


def test_a_claim_without_devices_is_still_a_valid_spec() -> None:
    s = spec()
    assert s["devices"] == []
    assert s["containerEdits"]["env"][0] == "NVIDIA_VISIBLE_DEVICES="


def test_spec_file_name_is_one_the_cdi_directory_scan_picks_up() -> None:
    name = spec_file_name(UID)
    assert name == f"k8s.gpu.gpudra.io-claim_{UID}.json"
    assert "/" not in name
