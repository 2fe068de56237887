"""Rebuilding prepared claims from the CDI specs that prepare wrote."""

from __future__ import annotations

from pathlib import Path

from gpudra.cdi.spec import CdiDevice, claim_spec
from gpudra.cdi.writer import CdiWriter
from gpudra.kubeletplugin.recovery import rebuild


def test_specs_on_disk_give_back_claims_devices_and_uuids(tmp_path: Path) -> None:
    cdi = CdiWriter(tmp_path)
    devices = [
        CdiDevice("gpu-1", "GPU-1", ("/dev/nvidia1",)),
        CdiDevice("gpu-2", "GPU-2", ("/dev/nvidia2",)),
    ]
    cdi.write(
        "u1", claim_spec(claim_uid="u1", namespace="ns", name="c", devices=devices, dev_root=None)
    )
    (tmp_path / "k8s.gpu.gpudra.io-claim_broken.json").write_text("{")
    (tmp_path / "other-vendor.json").write_text("{}")
    got = rebuild(cdi, pool="node-a")
    assert list(got) == ["u1"]
    c = got["u1"]
    assert (c.namespace, c.name, c.state) == ("ns", "c", "prepared")
    assert [(d.device, d.uuid, d.pool) for d in c.devices] == [
        ("gpu-1", "GPU-1", "node-a"),
        ("gpu-2", "GPU-2", "node-a"),
    ]
    assert c.devices[0].cdi_device_ids == ("k8s.gpu.gpudra.io/claim=u1-gpu-1",)
