"""The prepare service (`NodePlugin`) around its own boundaries: the claim comes from a fake
of gpudra's API client, the GPUs from the mock backend, the checkpoint and CDI specs are files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpudra.cdi.writer import CdiWriter
from gpudra.kubeletplugin.checkpoint import CheckpointStore
from gpudra.kubeletplugin.node import NodePlugin
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.nvml.mock import MockBackend, load_named
from tests.unit.kubeletplugin.test_prepare import DRIVER, NODE, claim, result

REF = ClaimRef(namespace="ns", name="c", uid="uid-1")


class FakeClient:
    """Answers `get` with one claim (the only call prepare makes)."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.gets = 0

    def get(self, res: Any, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        self.gets += 1
        return self.obj


def plugin(tmp_path: Path, client: FakeClient) -> NodePlugin:
    return NodePlugin(
        client=client,  # type: ignore[arg-type]
        backend=MockBackend(load_named("dgx-h100"), node_name=NODE),
        checkpoint=CheckpointStore(tmp_path / "checkpoint.json", node_name=NODE),
        cdi=CdiWriter(tmp_path),
        driver=DRIVER,
        node_name=NODE,
        dev_root=None,
    )


def test_a_prepared_claim_whose_cdi_spec_is_gone_gets_it_back(tmp_path: Path) -> None:
    client = FakeClient(claim(result("gpu-3")))
    node = plugin(tmp_path, client)
    first = node.prepare([REF])["uid-1"]
    spec = CdiWriter(tmp_path).path("uid-1")
    assert not first.error and spec.exists()

    again = node.prepare([REF])["uid-1"]  # the kubelet's repeat: answered from the checkpoint
    assert again.devices == first.devices and client.gets == 1

    spec.unlink()  # e.g. /var/run/cdi is a tmpfs
    third = node.prepare([REF])["uid-1"]
    assert not third.error
    assert spec.exists(), "a prepare answered from the checkpoint without its CDI spec"
    assert third.devices == first.devices and client.gets == 2
