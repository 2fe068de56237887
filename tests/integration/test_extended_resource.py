"""``nvidia.com/gpu`` through DRA (KEP-5004): with the chart's
``deviceClasses.extendedResourceName``, an unmodified pod with ``limits: {nvidia.com/gpu: 2}``
is given two whole GPUs by kube-scheduler (which makes the pod's claim) and the node daemon
prepares them for the kubelet stand-in.  1.36+; older servers drop the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import pod, unique
from gpudra_testkit.harness.chart import render
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import bound, node_slices
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration


def test_gpu_limits_are_served_through_dra(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    cluster_objects: Callable[[Any, dict[str, Any]], Any],
) -> None:
    values = {
        "deviceClasses": {"gpu": unique("gpu-ext"), "extendedResourceName": "nvidia.com/gpu"},
        "kubeletPlugin": {"enabled": False},
        "controller": {"enabled": False},
    }
    (cls,) = [
        o
        for o in render(values)
        if o["kind"] == "DeviceClass" and o["metadata"]["name"] == values["deviceClasses"]["gpu"]
    ]
    assert cls["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    stored = cluster_objects(resources.DEVICECLASSES, cls)
    minor = kube.server_version()[1]
    if minor < 36:
        # DRAExtendedResource is alpha and off: the server drops the field
        assert "extendedResourceName" not in stored["spec"]
        return
    d, h = node_daemon("dgx-h100")
    wait_for("slices", lambda: node_slices(kube, d.node_name))
    p = pod("limits", namespace, node=d.node_name)
    p["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "2"}}
    kube.create(resources.PODS, p, namespace=namespace)
    assert wait_for("the pod bound", lambda: bound(kube, namespace, "limits"), 60) == d.node_name
    got = kube.get(resources.PODS, "limits", namespace=namespace)
    status = got["status"]["extendedResourceClaimStatus"]
    claim = kube.get(resources.RESOURCECLAIMS, status["resourceClaimName"], namespace=namespace)
    results = claim["status"]["allocation"]["devices"]["results"]
    print(f"1.{minor}: {status} -> {[r['device'] for r in results]}")
    assert len(results) == 2 and all(r["driver"] == DRIVER_NAME for r in results)
    assert [m["resourceName"] for m in status["requestMappings"]] == ["nvidia.com/gpu"]
    resp = h.prepare_pod(got, DRIVER_NAME)
    (out,) = resp.values()
    assert not out.error
    assert sorted(dev.device_name for dev in out.devices) == sorted(r["device"] for r in results)
