"""Opaque claim configs as the real control plane hands them to the node: kube-scheduler
copies the DeviceClass's config (FromClass) and the claim's (FromClaim) into the allocation,
and the node daemon, asked by the kubelet stand-in, reads them there: a malformed one fails
prepare with the user's field path, and a config without sharing prepares.  Then sharing:
a TimeSlicing claim shared by two pods sets its GPU's interval until the last pod is gone;
an MPS claim gets one control daemon that survives a node daemon crash; and the chart's
admission policy refuses malformed configs at apply time with the node's messages."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.cdi.spec import spec_file_name
from gpudra.devices.timeslice import Interval
from gpudra.kube import KubeClient, resources
from gpudra.kube.errors import KubeError
from gpudra.kube.resources import Resource
from gpudra.kubeletplugin.sharing.claim_config import ClaimConfigError, parse
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import gpu_claim, pod, unique
from gpudra_testkit.harness.chart import render
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import bound
from gpudra_testkit.harness.processes import mps_daemons
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration
AR = "admissionregistration.k8s.io"
ADMISSION = {
    "ValidatingAdmissionPolicy": Resource(
        AR, "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", False
    ),
    "ValidatingAdmissionPolicyBinding": Resource(
        AR, "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False
    ),
}


def opaque(sharing: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig"}
    if sharing is not None:
        params["sharing"] = sharing
    return {"opaque": {"driver": DRIVER_NAME, "parameters": {**params, **extra}}}


def prepare_with(
    kube: KubeClient,
    h: KubeletHarness,
    d: NodeDaemon,
    namespace: str,
    name: str,
    configs: list[dict[str, Any]],
    device_class: str = "gpu.gpudra.io",
) -> tuple[dict[str, Any], str]:
    claim = gpu_claim(name, namespace, 1)
    claim["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = device_class
    claim["spec"]["devices"]["config"] = configs
    kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
    kube.create(resources.PODS, pod(name, namespace, name, node=d.node_name), namespace=namespace)
    wait_for(f"{name} bound", lambda: bound(kube, namespace, name), 60)
    got = kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)
    resp = h.prepare_pod(kube.get(resources.PODS, name, namespace=namespace), DRIVER_NAME)
    (out,) = resp.values()
    return got["status"]["allocation"]["devices"], out.error


def test_configs_reach_the_node_as_the_scheduler_copies_them(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    cluster_objects: Callable[[Any, dict[str, Any]], Any],
) -> None:
    d, h = node_daemon("dgx-h100")
    # a class whose own config is fine: a claim's config comes after it and wins
    cls = unique("gpu-configured")
    cluster_objects(
        resources.DEVICECLASSES,
        {
            "metadata": {"name": cls},
            "spec": {
                "selectors": [{"cel": {"expression": f"device.driver == '{DRIVER_NAME}'"}}],
                "config": [opaque(None)],
            },
        },
    )
    devices, error = prepare_with(kube, h, d, namespace, "plain", [opaque(None)], cls)
    assert [c["source"] for c in devices["config"]] == ["FromClass", "FromClaim"]
    assert error == ""

    _, error = prepare_with(
        kube,
        h,
        d,
        namespace,
        "typo",
        [opaque({"strategy": "MPS", "mpsConfg": {"defaultActiveThreadPercentage": 50}})],
    )
    print(f"malformed: {error}")
    assert "invalid config: spec.devices.config[0].opaque.parameters.sharing.mpsConfg: " in error
    assert "unknown field" in error

    _, error = prepare_with(
        kube, h, d, namespace, "nvidias", [opaque(None, apiVersion="resource.nvidia.com/v1beta1")]
    )
    assert "resource.nvidia.com/v1beta1 is NVIDIA's driver's; for gpudra use" in error


def test_two_pods_share_one_time_sliced_claim(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    """NVIDIA's time-slicing example, renamed: one claim, two pods, one CDI spec; the GPU's
    interval is set at prepare and back to Default after the last pod's unprepare."""
    d, h = node_daemon("dgx-h100")
    long = opaque({"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}})
    claim = gpu_claim("shared", namespace, 1)
    claim["spec"]["devices"]["config"] = [long]
    kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
    for p in ("a", "b"):
        kube.create(
            resources.PODS, pod(p, namespace, "shared", node=d.node_name), namespace=namespace
        )
        wait_for(f"{p} bound", lambda p=p: bound(kube, namespace, p), 60)
    got = kube.get(resources.RESOURCECLAIMS, "shared", namespace=namespace)
    uid = got["metadata"]["uid"]
    (res,) = got["status"]["allocation"]["devices"]["results"]
    mock = MockBackend(load_machine("dgx-h100"), node_name=d.node_name, state_file=d.state_file)
    gpu = next(g for g in mock.inventory().gpus if f"gpu-{g.minor}" == res["device"])
    assert gpu.time_slice is Interval.DEFAULT
    outs = [
        h.prepare_pod(kube.get(resources.PODS, p, namespace=namespace), DRIVER_NAME)[uid]
        for p in ("a", "b")
    ]
    assert all(not o.error for o in outs)
    ids = [list(o.devices[0].cdi_device_ids) for o in outs]
    assert ids[0] == ids[1] == [f"k8s.{DRIVER_NAME}/claim={uid}-{res['device']}"]
    specs = sorted(p.name for p in d.cdi_dir.glob("*.json"))
    assert specs == [spec_file_name(uid)]  # one spec for both pods
    assert mock.inventory().gpus[gpu.index].time_slice is Interval.LONG
    print(f"{res['device']}: time slice Long while pods a and b share claim {uid}")
    assert h.unprepare_pod(namespace, "a", DRIVER_NAME) == {}  # b still uses the claim
    assert mock.inventory().gpus[gpu.index].time_slice is Interval.LONG
    assert h.unprepare_pod(namespace, "b", DRIVER_NAME) == {uid: ""}
    assert mock.inventory().gpus[gpu.index].time_slice is Interval.DEFAULT
    assert not (d.cdi_dir / spec_file_name(uid)).exists()


def test_the_chart_policy_rejects_malformed_configs_at_apply_time(
    kube: KubeClient,
    namespace: str,
    cluster_objects: Callable[[Any, dict[str, Any]], Any],
) -> None:
    """The chart's ValidatingAdmissionPolicy, on the real API server: the node's messages at
    ``kubectl apply`` time, for claims and claim templates; a good config passes."""
    policy = [
        o
        for o in render({})
        if "AdmissionPolicy" in o["kind"]
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "claim-config"
    ]
    assert [o["kind"] for o in policy] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    for o in policy:
        cluster_objects(ADMISSION[o["kind"]], o)

    def claim_with(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
        c = gpu_claim(name, namespace, 1)
        c["spec"]["devices"]["config"] = [
            {"opaque": {"driver": "other.example.com", "parameters": {"any": "thing"}}},
            {"requests": ["gpus"], "opaque": {"driver": DRIVER_NAME, "parameters": parameters}},
        ]
        return c

    def refusal(obj: dict[str, Any], res: Any = resources.RESOURCECLAIMS) -> str:
        try:
            kube.create(res, obj, namespace=namespace)
        except KubeError as e:
            return str(e)
        kube.delete(res, obj["metadata"]["name"], namespace=namespace)
        return ""

    base = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig"}

    def mps(**config: Any) -> dict[str, Any]:
        return {**base, "sharing": {"strategy": "MPS", "mpsConfig": config}}

    def ts(**config: Any) -> dict[str, Any]:
        return {**base, "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": config}}

    typo = {**base, "sharing": {"strategy": "MPS", "mpsConfg": {}}}
    # the policy is enforced once the API server has loaded it
    first = wait_for("the policy enforced", lambda: refusal(claim_with(unique("probe"), typo)), 30)
    print(f"kubectl apply: {first}")
    assert "spec.devices.config[1].opaque.parameters.sharing.mpsConfg: unknown field" in first
    cases = [
        ({**base, "apiVersion": "resource.nvidia.com/v1beta1"}, "config[1].opaque.parameters"
         ".apiVersion: resource.nvidia.com/v1beta1 is NVIDIA's driver's; for gpudra use "
         "resource.gpudra.io/v1beta1"),
        ({**base, "kind": "GPUConfig"}, "config[1].opaque.parameters.kind: 'GPUConfig' is not "
         "allowed; allowed: GpuConfig, MigDeviceConfig"),
        ({**base, "sharng": {}}, "config[1].opaque.parameters.sharng: unknown field"),
        ({**base, "sharing": {"strategy": "Sliced"}}, "sharing.strategy: 'Sliced' is not "
         "allowed; allowed: 'TimeSlicing' or 'MPS'"),
        (ts(interval="Tiny"),
         "timeSlicingConfig.interval: 'Tiny' is not allowed; allowed: 'Default', 'Short', "
         "'Medium' or 'Long'"),
        (mps(defaultActiveThreadPercentage=0),
         "mpsConfig.defaultActiveThreadPercentage: must be an integer from 1 to 100"),
        (mps(defaultPinnedDeviceMemoryLimit="1Ki"),
         "mpsConfig.defaultPinnedDeviceMemoryLimit: must be a quantity of at least 1Mi"),
        ({**base, "sharing": {"strategy": "TimeSlicing", "mpsConfig": {}}},
         "sharing: mpsConfig goes with strategy MPS, not TimeSlicing"),
    ]  # fmt: skip
    for parameters, says in cases:
        got = refusal(claim_with(unique("bad"), parameters))
        assert says in got, (parameters, got)
        # and the node says the same (when the policy is absent)
        with pytest.raises(ClaimConfigError) as node:
            parse(parameters, "spec.devices.config[1].opaque.parameters")
        assert says in str(node.value), (parameters, str(node.value))
    good = {
        **base,
        "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}},
    }
    assert refusal(claim_with(unique("good"), good)) == ""
    template = {
        "metadata": {"name": unique("tpl"), "namespace": namespace},
        "spec": {"spec": claim_with("x", typo)["spec"]},
    }
    got = refusal(template, resources.RESOURCECLAIMTEMPLATES)
    assert "spec.spec.devices.config[1].opaque.parameters.sharing.mpsConfg: unknown field" in got


def test_an_mps_claim_gets_one_daemon_that_outlives_a_node_daemon_crash(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    """NVIDIA's MPS example, renamed: one MPS control daemon per claim, started before prepare
    returns, adopted (not duplicated) by a node daemon restarted after SIGKILL, restarted if
    it dies, stopped at unprepare; the CDI spec carries the MPS environment and mounts."""
    d, h = node_daemon("dgx-h100", extra_args=["--gc-interval-s", "0.5"])
    config = opaque(
        {
            "strategy": "MPS",
            "mpsConfig": {
                "defaultActiveThreadPercentage": 50,
                "defaultPinnedDeviceMemoryLimit": "10Gi",
            },
        }
    )
    claim = gpu_claim("mps", namespace, 2)
    claim["spec"]["devices"]["config"] = [config]
    kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
    kube.create(resources.PODS, pod("m", namespace, "mps", node=d.node_name), namespace=namespace)
    wait_for("m bound", lambda: bound(kube, namespace, "m"), 60)
    uid = kube.get(resources.RESOURCECLAIMS, "mps", namespace=namespace)["metadata"]["uid"]
    out = h.prepare_pod(kube.get(resources.PODS, "m", namespace=namespace), DRIVER_NAME)[uid]
    assert not out.error, out.error
    marker = f"mps/{uid}/pipe"
    (first,) = mps_daemons(marker)  # running when prepare returned: exactly one
    spec = json.loads((d.cdi_dir / spec_file_name(uid)).read_text())
    env = [e for dev in spec["devices"] for e in dev["containerEdits"].get("env", [])]
    env += spec.get("containerEdits", {}).get("env", [])
    print(f"MPS daemon {first}; CDI env {[e for e in env if 'MPS' in e]}")
    assert any(e.startswith("CUDA_MPS_PIPE_DIRECTORY=") for e in env)
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50" in env
    mounts = [m for dev in spec["devices"] for m in dev["containerEdits"].get("mounts", [])]
    mounts += spec.get("containerEdits", {}).get("mounts", [])
    assert any(marker in m["hostPath"] for m in mounts), mounts

    d.kill()  # SIGKILL: the MPS daemon keeps serving the running containers
    assert mps_daemons(marker) == [first]
    d.start()
    h.wait_for_plugin(DRIVER_NAME)
    again = h.prepare_pod(kube.get(resources.PODS, "m", namespace=namespace), DRIVER_NAME)[uid]
    assert not again.error
    assert mps_daemons(marker) == [first]  # adopted, not a second one

    os.kill(first, signal.SIGKILL)
    restarted = wait_for(
        "the MPS daemon restarted", lambda: [p for p in mps_daemons(marker) if p != first], 15
    )
    print(f"MPS daemon {first} killed; restarted as {restarted}")
    assert len(restarted) == 1

    assert h.unprepare_pod(namespace, "m", DRIVER_NAME) == {uid: ""}
    assert mps_daemons(marker) == []
