"""The prepare service (`NodePlugin`) as its unit tests build it: the claim from a fake of
gpudra's API client, the GPUs from the mock backend, the checkpoint and CDI specs files in
the test's directory, MPS daemons as mock processes under ``<tmp>/mps`` (shared by the
prepare-service and node-metrics tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.cdi.writer import CdiWriter
from gpudra.kube.resources import RESOURCECLAIMS
from gpudra.kubeletplugin.checkpoint_store import CheckpointStore
from gpudra.kubeletplugin.node import NodePlugin
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.kubeletplugin.sharing.mps import MpsControl
from gpudra.metrics.node import NodeMetrics
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.nvml.real import RealBackend
from tests.fakes.kube import FakeKubeClient
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE

REF = ClaimRef(namespace="ns", name="c", uid="uid-1")
MIG_DEV = "gpu-2-mig-3g40gb-9-0"  # 3g.40gb at memory slice 0 on GPU 2 (dynamic in mig_node)


class FakeClient(FakeKubeClient):
    """gpudra's recording fake client holding at most one ResourceClaim (``obj``; None:
    none, so a get answers NotFound): the only object prepare reads."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        super().__init__()
        self.obj = obj

    @property
    def obj(self) -> dict[str, Any] | None:
        found = self.objects(RESOURCECLAIMS)
        return found[0] if found else None

    @obj.setter
    def obj(self, claim: dict[str, Any] | None) -> None:
        self._store[RESOURCECLAIMS].clear()
        if claim is not None:
            self.seed(RESOURCECLAIMS, claim)

    @property
    def gets(self) -> int:
        return sum(1 for a in self.actions if a.verb == "get" and a.resource == RESOURCECLAIMS)


def plugin(
    tmp_path: Path,
    client: FakeClient,
    *,
    backend: MockBackend | RealBackend | None = None,
    dynamic: frozenset[int] = frozenset(),
    metrics: NodeMetrics | None = None,
    mps: MpsControl | None = None,
) -> NodePlugin:
    """A plugin with its checkpoint and CDI specs in ``tmp_path`` (a second one on the same
    directory is the same node after a restart)."""
    gpus = backend or MockBackend(load_machine("dgx-h100"), node_name=NODE)
    return NodePlugin(
        client=client,
        backend=gpus,
        checkpoint=CheckpointStore(tmp_path / "checkpoint.json", node_name=NODE),
        cdi=CdiWriter(tmp_path),
        driver=DRIVER,
        node_name=NODE,
        dev_root=None,
        catalogue=lambda: build_catalogue(gpus.inventory(), dynamic=dynamic),
        metrics=metrics,
        mps=mps or MpsControl(mock=True),
        mps_root=tmp_path / "mps",
    )


def mig_node(
    tmp_path: Path, client: FakeClient, *, metrics: NodeMetrics | None = None
) -> tuple[NodePlugin, MockBackend]:
    """dgx-h100-mig with GPU 2 as dynamic MIG; its state shared by every backend opened on it
    (like the hardware, it outlives a daemon)."""
    backend = MockBackend(
        load_machine("dgx-h100-mig"), node_name=NODE, state_file=tmp_path / "mock-state.json"
    )
    node = plugin(tmp_path, client, backend=backend, dynamic=frozenset({2}), metrics=metrics)
    return node, backend
