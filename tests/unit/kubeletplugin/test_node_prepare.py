"""The prepare service (`NodePlugin`) around its own boundaries: the claim comes from a fake
of gpudra's API client, the GPUs from the mock backend, the checkpoint and CDI specs are files."""

from __future__ import annotations

from pathlib import Path

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.cdi.writer import CdiWriter
from gpudra.kube.errors import KubeError
from gpudra.kube.resources import RESOURCECLAIMS
from gpudra.kubeletplugin.checkpoint_store import CheckpointStore
from gpudra.kubeletplugin.prepare import ClaimRef
from gpudra.kubeletplugin.recovery import rebuild
from gpudra.nvml.real import RealBackend
from tests.unit.kubeletplugin.plugins import MIG_DEV, REF, FakeClient, mig_node, plugin
from tests.unit.kubeletplugin.scenarios import NODE, claim, result
from tests.unit.nvml.fake_pynvml import switched


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


def test_a_foreign_mig_instance_is_never_adopted_nor_destroyed(tmp_path: Path) -> None:
    client = FakeClient(claim(result(MIG_DEV)))
    node, backend = mig_node(tmp_path, client)
    gpu2 = backend.inventory().gpus[2].uuid
    foreign = backend.create_mig_device(gpu2, "3g.40gb", 0)  # made by someone else

    first = node.prepare([REF])["uid-1"]
    assert "which gpudra did not create" in first.error
    # the kubelet retries: refused again (it was adopted here before)
    second = node.prepare([REF])["uid-1"]
    assert "which gpudra did not create" in second.error
    assert node.checkpoint.get("uid-1") is None, "a failed prepare left a record"

    node.unprepare([REF])
    assert foreign.uuid in {m.uuid for m in backend.inventory().mig_devices}


def test_a_prepare_resumed_after_a_crash_adopts_only_its_own_instance(tmp_path: Path) -> None:
    client = FakeClient(claim(result(MIG_DEV)))
    node, backend = mig_node(tmp_path, client)
    done = node.prepare([REF])["uid-1"]
    assert not done.error
    (mine,) = backend.inventory().mig_devices
    # a crash after the instance was created, before the claim was recorded as prepared
    held = node.checkpoint.get("uid-1")
    assert held is not None and held.devices[0].uuid == mine.uuid
    node.checkpoint.put(held.model_copy(update={"state": "preparing"}))
    CdiWriter(tmp_path).remove("uid-1")

    again = node.prepare([REF])["uid-1"]
    assert not again.error and again.devices[0].uuid == mine.uuid
    assert [m.uuid for m in backend.inventory().mig_devices] == [mine.uuid]
    assert node.unprepare([REF]) == {"uid-1": ""}
    assert backend.inventory().mig_devices == ()


def test_a_failed_prepare_rolls_back_the_instance_it_created(tmp_path: Path) -> None:
    client = FakeClient(claim(result(MIG_DEV)))
    node, backend = mig_node(tmp_path, client)
    cdi_dir = tmp_path / "cdi-blocked"
    cdi_dir.write_text("not a directory")  # every spec write fails
    node._cdi = CdiWriter(cdi_dir)
    failed = node.prepare([REF])["uid-1"]
    assert "cannot write CDI spec" in failed.error
    assert backend.inventory().mig_devices == ()
    assert node.checkpoint.get("uid-1") is None


def test_unprepare_refuses_a_uid_that_is_a_path(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "k8s.gpu.gpudra.io-claim_x.json"
    victim.write_text("{}")
    node = plugin(tmp_path / "node", FakeClient(None))
    bad = ClaimRef(namespace="ns", name="c", uid="../outside/k8s.gpu.gpudra.io-claim_x")
    # the spec file name is built from the UID: it must not leave the CDI directory
    node._cdi = CdiWriter(tmp_path / "cdi")
    (tmp_path / "cdi").mkdir()
    errors = node.unprepare([ClaimRef(bad.namespace, bad.name, "../outside/x")])
    assert "invalid claim UID" in errors["../outside/x"]
    assert victim.exists()
    assert "invalid claim UID" in node.prepare([bad])[bad.uid].error


def test_garbage_collection_releases_claims_gone_from_the_api(tmp_path: Path) -> None:
    client = FakeClient(claim(result(MIG_DEV)))
    node, backend = mig_node(tmp_path, client)
    assert not node.prepare([REF])["uid-1"].error
    assert node.collect_garbage() == []  # still exists: kept

    client.obj = claim(result(MIG_DEV), uid="uid-2")  # deleted and recreated
    with node._claim_lock("uid-1"):  # a prepare of it in flight: never collected
        assert node.collect_garbage() == []
    (released,) = node.collect_garbage()
    assert released.uid == "uid-1"
    assert node.checkpoint.claims() == {}
    assert backend.inventory().mig_devices == ()
    assert not CdiWriter(tmp_path).path("uid-1").exists()


def test_garbage_collection_needs_an_answer_from_the_server(tmp_path: Path) -> None:
    client = FakeClient(claim(result("gpu-3")))
    node = plugin(tmp_path, client)
    assert not node.prepare([REF])["uid-1"].error

    client.fail_next("get", RESOURCECLAIMS, KubeError("connection refused"))
    assert node.collect_garbage() == []
    assert set(node.checkpoint.claims()) == {"uid-1"}
    client.obj = None
    (released,) = node.collect_garbage()
    assert released.uid == "uid-1" and not CdiWriter(tmp_path).path("uid-1").exists()


def test_a_lost_checkpoint_is_rebuilt_with_footprints_and_mig_identity(tmp_path: Path) -> None:
    """Whole GPU (GPU 4, dynamic MIG but used whole), static MIG (GPU 3's existing instance)
    and dynamic MIG (GPU 2) claims;
    the checkpoint is then lost.  The rebuilt one must still refuse the GPUs under the MIG
    slices, and unprepare must still destroy the dynamic instance."""
    client = FakeClient(None)
    _, backend = mig_node(tmp_path, client)
    dynamic = frozenset({2, 4})
    node = plugin(tmp_path, client, backend=backend, dynamic=dynamic)
    gpu3 = backend.inventory().gpus[3]
    static = backend.create_mig_device(gpu3.uuid, "1g.10gb", 0)
    static_dev = next(
        name
        for name, d in build_catalogue(backend.inventory(), dynamic=dynamic).devices.items()
        if d.uuid == static.uuid
    )
    refs = {
        dev: ClaimRef(namespace="ns", name="c", uid=f"uid-{i}")
        for i, dev in enumerate(["gpu-4", static_dev, MIG_DEV])
    }
    for dev, ref in refs.items():
        client.obj = claim(result(dev), uid=ref.uid)
        assert not node.prepare([ref])[ref.uid].error, dev
    before = node.checkpoint.claims()
    (tmp_path / "checkpoint.json").write_text("{ torn")

    store = CheckpointStore(
        tmp_path / "checkpoint.json",
        node_name=NODE,
        rebuild=lambda: rebuild(CdiWriter(tmp_path), pool=NODE),
    )
    assert store.recovered_from is not None
    assert store.claims() == before
    again = plugin(tmp_path, client, backend=backend, dynamic=dynamic)
    again.checkpoint = store
    # the whole GPU 2 (a MIG slice of it is in use), a MIG slice of the whole GPU 4 in use
    for dev in ("gpu-2", "gpu-4-mig-1g10gb-19-0"):
        client.obj = claim(result(dev), uid=f"thief-{dev}")
        thief = ClaimRef(namespace="ns", name="c", uid=f"thief-{dev}")
        assert "already prepared" in again.prepare([thief])[thief.uid].error
    assert again.unprepare([refs[MIG_DEV]]) == {"uid-2": ""}
    assert [m.uuid for m in backend.inventory().mig_devices] == [static.uuid]
    assert again.unprepare([refs[static_dev]]) == {"uid-1": ""}
    assert [m.uuid for m in backend.inventory().mig_devices] == [static.uuid]  # not ours


def test_one_lost_gpu_on_real_nvml_fails_only_its_own_claims(tmp_path: Path) -> None:
    """The real backend over the fake pynvml: GPU 3 falls off the bus.  A claim on GPU 0 is
    still prepared; one on GPU 3 is refused as unhealthy (not a failed NVML read)."""
    lib = switched(8)
    backend = RealBackend(node_name=NODE, lib=lib)
    client = FakeClient(claim(result("gpu-0")))
    node = plugin(tmp_path, client, backend=backend)
    lib.gpus[3].lost = True
    assert not node.prepare([REF])["uid-1"].error
    client.obj = claim(result("gpu-3"), uid="uid-3")
    ref3 = ClaimRef(namespace="ns", name="c", uid="uid-3")
    assert "is not healthy" in node.prepare([ref3])["uid-3"].error
