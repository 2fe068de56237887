"""Claims holding a share of a GPU (consumable capacity): the plan of the GPU's shared MPS
daemon with the claim's share as its clients' limits, the claims refused (shares of two
GPUs, shares beside exclusive devices), the CDI edits, the exclusivity guard, and the share
answered to the kubelet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpudra._proto import dra_v1_pb2, dra_v1beta1_pb2
from gpudra.catalogue.catalogue import build_catalogue
from gpudra.kubeletplugin.exclusivity import exclusivity_conflicts
from gpudra.kubeletplugin.grpc_server import DraV1beta1Servicer, DraV1Servicer
from gpudra.kubeletplugin.prepare import ClaimRef, finish, resolve_claim
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.nodestate.checkpoint import MpsPlan, PreparedClaim, PreparedDevice
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.plugins import REF, FakeClient, plugin
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE, claim, result

BACKEND = MockBackend(load_machine("dgx-h100"), node_name=NODE)
CATALOGUE = build_catalogue(BACKEND.inventory())  # 132 multiprocessors per H100
UUID = {g.index: g.uuid for g in BACKEND.inventory().gpus}
ROOT = "/plugin/mps"


def share(
    device: str = "gpu-1",
    memory: str = "19074Mi",
    multiprocessors: str = "0",
    share_id: str = "s-1",
    request: str = "gpus",
) -> dict[str, Any]:
    consumed = {"memory": memory, "multiprocessors": multiprocessors, "shares": "1"}
    return result(device, request, shareID=share_id, consumedCapacity=consumed)


def with_config(c: dict[str, Any], sharing: dict[str, Any]) -> dict[str, Any]:
    params = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig", "sharing": sharing}
    c["status"]["allocation"]["devices"]["config"] = [
        {"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": params}}
    ]
    return c


def resolve(c: dict[str, Any], mps_root: str | None = ROOT, uid: str = "uid-1") -> PreparedClaim:
    ref = ClaimRef("ns", "c", uid)
    return resolve_claim(
        c, ref, driver=DRIVER, node_name=NODE, catalogue=CATALOGUE, mps_root=mps_root
    )


def plan_of(c: dict[str, Any]) -> MpsPlan:
    got = resolve(c).mps
    assert got is not None
    return got


def test_a_share_gets_the_gpus_shared_daemon_and_its_share_as_client_limits() -> None:
    got = resolve(claim(share()))
    (d,) = got.devices
    assert (d.share_id, d.shareable, d.share_memory_mib) == ("s-1", True, 19074)
    assert got.mps == MpsPlan(
        uuids=(UUID[1],),
        pipe_dir=f"{ROOT}/gpu-{UUID[1]}/pipe",
        log_dir=f"{ROOT}/gpu-{UUID[1]}/log",
        shared=True,
        client_pinned_limit="19074M",
    )
    assert got.mps.active_thread_percentage is None and got.mps.pinned_limits == ()


LIMITS = {
    "MiB": (share(memory="19074Mi"), "19074M"),
    "bytes, rounded down to a MiB": (share(memory="20000000000"), "19073M"),
    "no memory consumed": (share(memory="0"), ""),
}


@pytest.mark.parametrize("case", LIMITS)
def test_the_client_pinned_limit_is_the_consumed_memory(case: str) -> None:
    r, limit = LIMITS[case]
    assert plan_of(claim(r)).client_pinned_limit == limit


THREADS = {
    "none consumed": ("0", None),
    "a quarter exactly": ("33", 25),
    "rounded up": ("34", 26),  # 3400 / 132 = 25.8
    "all": ("132", 100),
}


@pytest.mark.parametrize("case", THREADS)
def test_the_client_thread_percentage_is_the_consumed_multiprocessors(case: str) -> None:
    consumed, percentage = THREADS[case]
    assert plan_of(claim(share(multiprocessors=consumed))).client_thread_percentage == percentage


CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any], str, int | None]] = {
    "config threads when none consumed": (
        share(),
        {"defaultActiveThreadPercentage": 40},
        "19074M",
        40,
    ),
    "consumed threads win": (
        share(multiprocessors="66"),
        {"defaultActiveThreadPercentage": 40},
        "19074M",
        50,
    ),
    "a smaller config limit wins": (
        share(),
        {"defaultPinnedDeviceMemoryLimit": "10Gi"},
        "10240M",
        None,
    ),
    "a larger config limit does not": (
        share(),
        {"defaultPinnedDeviceMemoryLimit": "30Gi"},
        "19074M",
        None,
    ),
    "per device limit by index": (
        share(),
        {"defaultPerDevicePinnedMemoryLimit": {"0": "1Gi"}},
        "1024M",
        None,
    ),
    "config limit without consumed memory": (
        share(memory="0"),
        {"defaultPinnedDeviceMemoryLimit": "2Gi"},
        "2048M",
        None,
    ),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_the_claims_mps_config_applies_to_its_share(case: str) -> None:
    r, mps_config, limit, threads = CONFIGS[case]
    got = plan_of(with_config(claim(r), {"strategy": "MPS", "mpsConfig": mps_config}))
    assert got.shared and got.active_thread_percentage is None and got.pinned_limits == ()
    assert (got.client_pinned_limit, got.client_thread_percentage) == (limit, threads)


def test_a_time_slicing_config_on_a_share_still_sets_the_interval() -> None:
    sharing = {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}
    got = resolve(with_config(claim(share()), sharing))
    assert got.devices[0].time_slice == "Long"
    assert got.mps is not None and got.mps.shared


def test_without_mps_a_share_is_prepared_unenforced() -> None:
    got = resolve(claim(share()), mps_root=None)
    assert got.mps is None and got.devices[0].share_id == "s-1"
    with pytest.raises(PrepareError, match="MPS is not enabled on this node"):
        resolve(with_config(claim(share()), {"strategy": "MPS"}), mps_root=None)


def test_two_requests_sharing_one_gpu_are_one_device_their_shares_added() -> None:
    a, b = share(request="a", share_id="s-a"), share(request="b", share_id="s-b", memory="1Gi")
    got = resolve(claim(a, b))
    (d,) = got.devices
    assert d.request_names == ("a", "b") and d.share_id == "s-a"
    assert got.mps is not None and got.mps.client_pinned_limit == f"{19074 + 1024}M"


REFUSED = {
    "shares of two GPUs": (
        claim(share("gpu-1", request="a"), share("gpu-2", request="b")),
        "it holds shares of 2 GPUs (gpu-1, gpu-2)",
    ),
    "a share and an exclusive device": (
        claim(share("gpu-1", request="a"), result("gpu-2", "b")),
        "it holds shares (gpu-1) and exclusive devices (gpu-2)",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
@pytest.mark.parametrize("mps_root", [ROOT, None], ids=["mps", "no mps"])
def test_a_claim_may_hold_shares_of_one_gpu_only(case: str, mps_root: str | None) -> None:
    c, what = REFUSED[case]
    with pytest.raises(PrepareError) as e:
        resolve(c, mps_root=mps_root)
    assert e.value.kind is ErrorType.UNSUPPORTED_CONFIG
    message = str(e.value)
    assert what in message
    assert "one MPS daemon (one CUDA_MPS_PIPE_DIRECTORY)" in message
    assert "one claim may hold shares of one GPU only: ask for one device per claim" in message
    assert "NVIDIA's driver has the same limit, its issue #1283" in message


def test_a_consumed_capacity_that_is_no_quantity_is_refused() -> None:
    with pytest.raises(
        PrepareError, match=r"consumedCapacity.memory 'lots' is not a quantity"
    ) as e:
        resolve(claim(share(memory="lots")))
    assert e.value.kind is ErrorType.INVALID_REQUEST


def test_the_containers_of_a_share_get_its_limits() -> None:
    wanted = resolve(claim(share(multiprocessors="34")))
    spec = finish(wanted, {}, catalogue=CATALOGUE, dev_root=None).cdi_spec
    edits = spec["containerEdits"]
    assert {
        "CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps",
        "CUDA_MPS_LOG_DIRECTORY=/var/log/nvidia-mps",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=19074M",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=26",
    } <= set(edits["env"])
    assert [m["hostPath"] for m in edits["mounts"]] == [
        f"{ROOT}/gpu-{UUID[1]}/pipe",
        f"{ROOT}/gpu-{UUID[1]}/log",
    ]


def test_shares_coexist_and_exclusive_claims_stay_out() -> None:
    a = resolve(claim(share(share_id="s-a"), uid="a"), uid="a")
    b = resolve(claim(share(share_id="s-b"), uid="b"), uid="b")
    exclusive = resolve(claim(result("gpu-1"), uid="x"), uid="x")
    assert exclusivity_conflicts(b, [a]) == []
    (msg,) = exclusivity_conflicts(exclusive, [a])
    assert "already prepared for claim ns/c (a)" in msg
    assert len(exclusivity_conflicts(a, [exclusive])) == 1


def test_records_from_before_shares_still_load() -> None:
    old = {"requestNames": ["g"], "pool": "n", "device": "gpu-1", "cdiDeviceIds": ["k/c=x"],
           "uuid": "GPU-x", "shareable": True}  # fmt: skip
    d = PreparedDevice.model_validate(old)
    assert d.shareable and (d.share_id, d.share_memory_mib, d.share_multiprocessors) == ("", 0, 0)
    plan = MpsPlan.model_validate({"uuids": ["GPU-x"], "pipeDir": "/p", "logDir": "/l"})
    assert not plan.shared and plan.client_pinned_limit == ""
    assert plan.client_thread_percentage is None


@pytest.mark.parametrize(
    ("servicer", "pb2", "carried"),
    [(DraV1Servicer, dra_v1_pb2, True), (DraV1beta1Servicer, dra_v1beta1_pb2, False)],
    ids=["v1", "v1beta1"],
)
def test_the_kubelet_is_told_the_share(
    tmp_path: Path, servicer: Any, pb2: Any, carried: bool
) -> None:
    node = plugin(tmp_path, FakeClient(claim(share(share_id="5e7c0b9e-share"))))
    request = pb2.NodePrepareResourcesRequest(
        claims=[pb2.Claim(namespace=REF.namespace, name=REF.name, uid=REF.uid)]
    )
    got = servicer(node).NodePrepareResources(request, None).claims[REF.uid]
    assert not got.error, got.error
    (device,) = got.devices
    assert device.device_name == "gpu-1"
    if carried:
        assert device.HasField("share_id") and device.share_id == "5e7c0b9e-share"
    node.unprepare([REF])
