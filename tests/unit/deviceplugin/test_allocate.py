"""Allocate: per container, the env, CDI names and device nodes NVIDIA's strategies give, and
NVIDIA's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.deviceplugin.advertise import layout
from gpudra.deviceplugin.allocate import AllocateError, container_allocation
from gpudra.deviceplugin.config import parse_config
from gpudra.deviceplugin.options import Options
from tests.unit.deviceplugin.nodes import SEVEN_1G, catalogue, mock, with_migs

GPU = "nvidia.com/gpu"


def options(**kw: object) -> Options:
    base: dict[str, object] = {
        "resource_name": GPU,
        "mig_strategy": "none",
        "list_strategy": ("envvar", "cdi-cri"),
        "id_strategy": "uuid",
        "pass_device_specs": False,
    }
    return Options(**(base | kw))  # type: ignore[arg-type]


def gpus():  # type: ignore[no-untyped-def]
    c = catalogue(mock("dgx-h100"))
    return c, layout(c, resource_name=GPU, mig_strategy="none").resources[0]


def test_envvar_and_cdi_name_exactly_the_chosen_gpus() -> None:
    c, r = gpus()
    u = [g.uuid for g in c.inventory.gpus]
    a = container_allocation(r, [u[5], u[2]], options(), dev_root=None)
    assert a.envs == {"NVIDIA_VISIBLE_DEVICES": f"{u[5]},{u[2]}"}
    assert a.cdi_devices == (
        "k8s.gpu.gpudra.io/device=gpu-5",
        "k8s.gpu.gpudra.io/device=gpu-2",
    )
    assert a.device_nodes == ()


def test_each_strategy_alone_and_the_index_id_strategy() -> None:
    c, r = gpus()
    u = [g.uuid for g in c.inventory.gpus]
    env_only = container_allocation(
        r, [u[1]], options(list_strategy=("envvar",), id_strategy="index"), dev_root=None
    )
    assert env_only.envs == {"NVIDIA_VISIBLE_DEVICES": "1"} and env_only.cdi_devices == ()
    cdi_only = container_allocation(r, [u[1]], options(list_strategy=("cdi-cri",)), dev_root=None)
    assert cdi_only.envs == {} and cdi_only.cdi_devices == ("k8s.gpu.gpudra.io/device=gpu-1",)


def test_pass_device_specs_returns_the_nodes_real_or_stand_in() -> None:
    c, r = gpus()
    u = c.inventory.gpus[3].uuid
    minor = c.inventory.gpus[3].minor
    real = container_allocation(r, [u], options(pass_device_specs=True), dev_root=None)
    paths = [(n.container_path, n.host_path) for n in real.device_nodes]
    assert (f"/dev/nvidia{minor}", f"/dev/nvidia{minor}") in paths
    assert ("/dev/nvidiactl", "/dev/nvidiactl") in paths
    mock_nodes = container_allocation(r, [u], options(pass_device_specs=True), dev_root="/fake")
    assert (f"/dev/nvidia{minor}", f"/fake/nvidia{minor}") in [
        (n.container_path, n.host_path) for n in mock_nodes.device_nodes
    ]


def test_mig_devices_by_uuid_or_index(tmp_path: Path) -> None:
    c = catalogue(with_migs(mock("dgx-h100-mig", tmp_path / "s.json"), SEVEN_1G))
    r = layout(c, resource_name=GPU, mig_strategy="single").resources[0]
    d = r.devices[8]  # seven per GPU: GPU 1, its second MIG device
    by_uuid = container_allocation(r, [d.id], options(), dev_root=None)
    assert by_uuid.envs == {"NVIDIA_VISIBLE_DEVICES": d.uuid} and d.uuid.startswith("MIG-")
    by_index = container_allocation(r, [d.id], options(id_strategy="index"), dev_root=None)
    assert by_index.envs == {"NVIDIA_VISIBLE_DEVICES": "1:1"}


def shared(fail: bool):  # type: ignore[no-untyped-def]
    text = (
        "version: v1\nsharing:\n  timeSlicing:\n"
        f"    failRequestsGreaterThanOne: {str(fail).lower()}\n"
        "    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n"
    )
    ts = parse_config(text, source="t").time_slicing
    c = catalogue(mock("dgx-h100"))
    return layout(c, resource_name=GPU, mig_strategy="none", time_slicing=ts).resources[0], ts


def test_replicas_of_one_gpu_name_it_once() -> None:
    r, ts = shared(fail=False)
    u = r.devices[0].uuid
    a = container_allocation(r, [f"{u}::0", f"{u}::3"], options(time_slicing=ts), dev_root=None)
    assert a.envs == {"NVIDIA_VISIBLE_DEVICES": u}
    assert a.cdi_devices == ("k8s.gpu.gpudra.io/device=gpu-0",)


def test_fail_requests_greater_than_one_is_nvidias_error() -> None:
    r, ts = shared(fail=True)
    ids = [r.devices[0].id, r.devices[4].id]
    with pytest.raises(AllocateError) as e:
        container_allocation(r, ids, options(time_slicing=ts), dev_root=None)
    assert str(e.value) == (
        "request for 'nvidia.com/gpu: 2' too large: maximum request size for shared resources is 1"
    )
    one = container_allocation(r, ids[:1], options(time_slicing=ts), dev_root=None)
    assert one.envs["NVIDIA_VISIBLE_DEVICES"] == r.devices[0].uuid


def test_an_unknown_id_is_nvidias_error() -> None:
    _, r = gpus()
    with pytest.raises(AllocateError) as e:
        container_allocation(r, ["GPU-nope"], options(), dev_root=None)
    assert (
        str(e.value) == "invalid allocation request for 'nvidia.com/gpu': unknown device: GPU-nope"
    )
