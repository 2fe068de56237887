"""Allocate (pure): the device IDs the kubelet chose for a container -> what the container gets.

Per NVIDIA's ``deviceListStrategy``:

* ``envvar``: ``NVIDIA_VISIBLE_DEVICES`` with the devices' UUIDs (``deviceIDStrategy: uuid``)
  or indices (``index``: ``3``, ``1:0`` for a MIG device), each device once even when several
  of its time-slicing replicas were chosen;
* ``cdi-cri``: the devices' CDI names (``k8s.gpu.gpudra.io/device=gpu-3``) in the response's
  ``cdi_devices``, which the kubelet passes to the runtime through the CRI; the spec (written
  before the response, ``gpudra.cdi.spec.device_plugin_spec``) adds the device nodes.

``passDeviceSpecs`` also returns the device nodes themselves (for a runtime without CDI):
the real ``/dev`` nodes, or the mock's stand-ins.  The checks and their messages are
NVIDIA's: an unknown ID, and more than one replica with ``failRequestsGreaterThanOne``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpudra.cdi.spec import CONTROL_NODES, plugin_device_id
from gpudra.common.errors import GpudraError
from gpudra.deviceplugin.advertise import AdvertisedResource, PluginDevice
from gpudra.deviceplugin.options import Options


class AllocateError(GpudraError, ValueError):
    """The request cannot be served; the message is what the kubelet reports on the pod."""


@dataclass(frozen=True)
class DeviceNode:
    container_path: str
    host_path: str
    permissions: str = "rw"


@dataclass(frozen=True)
class ContainerAllocation:
    envs: dict[str, str]
    cdi_devices: tuple[str, ...]
    device_nodes: tuple[DeviceNode, ...]
    devices: tuple[PluginDevice, ...]  # the distinct devices behind the IDs, in request order


def check(resource: AdvertisedResource, ids: Sequence[str], options: Options) -> list[PluginDevice]:
    """The devices behind ``ids``; AllocateError with NVIDIA's message when not servable."""
    if options.fail_requests_greater_than_one and resource.shared and len(ids) > 1:
        raise AllocateError(
            f"request for '{resource.name}: {len(ids)}' too large: maximum request size for "
            "shared resources is 1"
        )
    out = []
    for i in ids:
        d = resource.device(i)
        if d is None:
            raise AllocateError(
                f"invalid allocation request for '{resource.name}': unknown device: {i}"
            )
        out.append(d)
    return out


def _host(path: str, dev_root: str | None) -> str:
    return path if dev_root is None else f"{dev_root.rstrip('/')}/{path.rsplit('/', 1)[-1]}"


def container_allocation(
    resource: AdvertisedResource, ids: Sequence[str], options: Options, *, dev_root: str | None
) -> ContainerAllocation:
    chosen = check(resource, ids, options)
    distinct = tuple({d.uuid: d for d in chosen}.values())
    envs: dict[str, str] = {}
    cdi: tuple[str, ...] = ()
    if "envvar" in options.list_strategy:
        visible = [d.uuid if options.id_strategy == "uuid" else d.index for d in distinct]
        envs["NVIDIA_VISIBLE_DEVICES"] = ",".join(visible)
    if "cdi-cri" in options.list_strategy:
        cdi = tuple(plugin_device_id(d.device) for d in distinct)
    nodes: tuple[DeviceNode, ...] = ()
    if options.pass_device_specs:
        paths = dict.fromkeys([*CONTROL_NODES, *(p for d in distinct for p in d.device_nodes)])
        nodes = tuple(DeviceNode(p, _host(p, dev_root)) for p in paths)
    return ContainerAllocation(envs=envs, cdi_devices=cdi, device_nodes=nodes, devices=distinct)
