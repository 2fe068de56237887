"""charts/gpudra rendered by the real helm CLI: lint, schema errors, and what each value renders.

No cluster here; tests/integration/test_chart.py applies the rendered objects to the real API
server and runs the components with the chart's service-account tokens.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudra.catalogue.gpuset import GpuSet
from gpudra.cli.kubelet_plugin import settings_from
from gpudra.nvml.mock import available_machines
from gpudra.settings import KubeletPluginSettings
from gpudra_testkit.deviceclasses import shipped
from gpudra_testkit.harness.chart import CHART, find, helm, render

MOCK = {"mock": {"enabled": True}}
MAP = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def test_helm_lint_passes_for_default_and_mock_values(tmp_path: Path) -> None:
    (tmp_path / "mock.yaml").write_text(yaml.safe_dump(MOCK))
    for extra in ([], ["--values", str(tmp_path / "mock.yaml")]):
        out = helm("lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("setting", "where", "says"),
    [
        ("mock.profile=dgx-x", "/mock/profile", "value must be one of 'dgx-h100'"),
        ("driverName=Bad_Name", "/driverName", "does not match pattern"),
        (f"driverName={'a' * 64}", "/driverName", "maxLength: got 64, want 63"),
        ("kubeletPlugin.dynamicMigGpus=0-x", "/kubeletPlugin/dynamicMigGpus", "pattern"),
        ("kubeletPlugin.controllerManagedGpus=some", "/kubeletPlugin/controllerManagedGpus", ""),
        ("kubeletPlugin.sharedGpus=0-x", "/kubeletPlugin/sharedGpus", "pattern"),
        ("kubeletPlugin.gpuShares=1", "/kubeletPlugin/gpuShares", ""),
        ("kubeletPlugin.gpuShares=49", "/kubeletPlugin/gpuShares", "maximum"),
        ("controller.replicas=-1", "/controller/replicas", "minimum"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy", "must be one of"),
        ("kubeletPlugin.extraConfig.nodeName=x", "/kubeletPlugin/extraConfig", "nodeName"),
        ("mock.profileNodeLabel=a b", "/mock/profileNodeLabel", "pattern"),
        ("kubeletPlugin.metricsPort=70000", "/kubeletPlugin/metricsPort", "maximum"),
        ("kubeletPlugin.gpus=some", "/kubeletPlugin/gpus", "pattern"),
        ("kubeletPlugin.extraConfig.gpuLockDir=/x", "/kubeletPlugin/extraConfig", "gpuLockDir"),
        (
            "deviceClasses.extendedResourceName=gpu",
            "/deviceClasses/extendedResourceName",
            "pattern",
        ),
        ("bogus=1", "''", "additional properties 'bogus' not allowed"),
    ],
    ids=lambda v: v if "=" in str(v) else None,
)
def test_invalid_values_fail_helm_template_with_the_schema_message(
    setting: str, where: str, says: str
) -> None:
    p = helm("template", "t", str(CHART), "--set", setting, check=False)
    assert p.returncode != 0
    assert f"at '{where.strip(chr(39))}'" in p.stderr or f"at {where}" in p.stderr, p.stderr
    assert says in p.stderr


def test_schema_profiles_and_config_keys_match_the_code() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]
    assert sorted(props["mock"]["properties"]["profile"]["enum"]) == sorted(available_machines())
    # not settable: where to reach the API (the pod's token), the node (downward API), the GPU
    # lock dir (mounted by the chart, shared with the device plugin)
    camel = {
        re.sub(r"_(.)", lambda m: m.group(1).upper(), k) for k in KubeletPluginSettings.model_fields
    } - {"kubeconfig", "nodeName", "gpuLockDir"}
    extra = props["kubeletPlugin"]["properties"]["extraConfig"]["properties"]
    assert set(extra) == camel


def test_every_values_key_has_a_comment_and_a_schema_entry() -> None:
    """Each chart key (not the contents of a Kubernetes object such as ``resources``) has a
    comment line above it, and the schema knows it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing, path = [], []  # path: (indent, schema node of that key)
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while path and path[-1][0] >= indent:
            path.pop()
        parent = path[-1][1] if path else schema
        if parent is None or "properties" not in parent:
            continue  # inside a free-form Kubernetes object (resources, podSelector, ...)
        node = parent["properties"].get(m.group(2))
        if node is None:
            missing.append(f"line {i + 1}: {m.group(2)} is not in values.schema.json")
        elif not lines[i - 1].strip().startswith("#"):
            missing.append(f"line {i + 1}: {m.group(2)} has no comment")
        path.append((indent, node if node is not None and node.get("type") == "object" else None))
    assert not missing, missing


def daemon_settings(objs: list[dict[str, Any]], tmp_path: Path) -> KubeletPluginSettings:
    """What the node daemon makes of the rendered config file (its own parser and checks)."""
    cm = find(objs, "ConfigMap", "kubelet-plugin")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    args = argparse.Namespace(config=path, node_name="n1")
    return settings_from(args)


def test_mock_values_render_a_valid_daemon_config_and_a_least_privileged_pod(
    tmp_path: Path,
) -> None:
    objs = render({"mock": {"enabled": True, "profile": "dgx1-v100"}})
    s = daemon_settings(objs, tmp_path)
    assert (s.backend, s.profile, s.profile_node_label) == (
        "mock",
        "dgx1-v100",
        "gpudra.io/mock-profile",
    )
    assert s.plugin_path == Path("/var/lib/kubelet/plugins/gpu.gpudra.io")
    assert s.mock_state_file == s.plugin_path / "mock-state.json"
    assert s.gpu_lock_path == Path("/var/lib/kubelet/gpudra/gpus")  # the device plugin's too
    pod = find(objs, "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert not sc.get("privileged")
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["MKNOD"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    host = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host == {
        "/var/lib/kubelet/plugins/gpu.gpudra.io",
        "/var/lib/kubelet/plugins_registry",
        "/var/run/cdi",
        str(s.gpu_lock_path),
    }
    # every host path is mounted at the same path: the socket and CDI paths the daemon
    # reports are host paths
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for v in pod["volumes"]:
        if "hostPath" in v:
            assert mounts[v["name"]] == v["hostPath"]["path"]


def test_real_mode_mounts_dev_and_the_driver_root_privileged(tmp_path: Path) -> None:
    objs = render({"kubeletPlugin": {"real": {"nvidiaDriverRoot": "/run/nvidia/driver"}}})
    s = daemon_settings(objs, tmp_path)
    assert s.backend == "nvml" and s.profile is None
    pod = find(objs, "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["securityContext"] == {"privileged": True}
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host["dev"] == "/dev" and host["driver-root"] == "/run/nvidia/driver"
    ro = {m["name"]: m.get("readOnly", False) for m in c["volumeMounts"]}
    assert ro["driver-root"] is True
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert "/driver-root/usr/lib64" in env["LD_LIBRARY_PATH"]
    with_rc = render({"kubeletPlugin": {"real": {"runtimeClassName": "nvidia"}}})
    pod = find(with_rc, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert "driver-root" not in {v["name"] for v in pod["volumes"]}


def test_gpu_modes_and_extra_config_reach_the_daemon(tmp_path: Path) -> None:
    objs = render(
        {
            "mock": {"enabled": True, "profile": "dgx-h100-mig"},
            "kubeletPlugin": {
                "dynamicMigGpus": "0-3",
                "controllerManagedGpus": "4-7",
                "removeUnknownMig": True,
                "gpus": "0-5",
                "extraConfig": {"cliqueId": "c7", "dynamicMigGpus": "ignored"},
            },
        }
    )
    s = daemon_settings(objs, tmp_path)
    assert (str(s.dynamic_mig_gpus), str(s.controller_managed_gpus)) == ("0-3", "4-7")
    assert s.remove_unknown_mig is True and s.clique_id == "c7"
    assert str(s.gpus) == "0-5"
    assert daemon_settings(render(MOCK), tmp_path).gpus.every  # default: all


def test_shared_gpus_and_their_shares_reach_the_daemon_only_when_set(tmp_path: Path) -> None:
    objs = render({**MOCK, "kubeletPlugin": {"sharedGpus": "2-3", "gpuShares": 4}})
    s = daemon_settings(objs, tmp_path)
    assert (str(s.shared_gpus), s.gpu_shares) == ("2-3", 4)
    config = yaml.safe_load(
        find(render(MOCK), "ConfigMap", "kubelet-plugin")["data"]["config.yaml"]
    )
    assert "sharedGpus" not in config and "gpuShares" not in config
    s = daemon_settings(render(MOCK), tmp_path)
    assert (s.shared_gpus, s.gpu_shares) == (GpuSet(), 0)


def test_driver_name_flows_to_every_object_that_names_it(tmp_path: Path) -> None:
    objs = render({"driverName": "gpu.example.com", "mock": {"enabled": True}})
    assert daemon_settings(objs, tmp_path).driver_name == "gpu.example.com"
    for dc in (o for o in objs if o["kind"] == "DeviceClass"):
        expr = dc["spec"]["selectors"][0]["cel"]["expression"]
        assert "device.driver == 'gpu.example.com'" in expr
        assert "device.attributes['gpu.example.com']" in expr
    vap = find(objs, "ValidatingAdmissionPolicy", "kubelet-plugin")
    assert any("gpu.example.com" in v["expression"] for v in vap["spec"]["validations"])
    pod = find(objs, "DaemonSet")["spec"]["template"]["spec"]
    paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert "/var/lib/kubelet/plugins/gpu.example.com" in paths
    ctl = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--driver-name=gpu.example.com" in ctl["args"]


def test_controller_replicas_run_under_leader_election_in_the_release_namespace() -> None:
    args = find(render(namespace="gpu-ops"), "Deployment")["spec"]["template"]["spec"]
    c = args["containers"][0]
    assert c["command"] == ["gpudra"]
    assert {"--leader-elect", "--lease-namespace=gpu-ops", "--lease-name=gpudra-controller"} <= set(
        c["args"]
    )
    assert c["securityContext"]["runAsNonRoot"] is True
    one = find(render({"controller": {"replicas": 1}}), "Deployment")
    assert "--leader-elect" not in one["spec"]["template"]["spec"]["containers"][0]["args"]
    role = find(render(namespace="gpu-ops"), "Role")
    assert role["metadata"]["namespace"] == "gpu-ops"
    assert all(r["resources"] == ["leases"] for r in role["rules"])


def test_controller_pod_policy_matches_the_controllers_account_and_can_be_turned_off() -> None:
    objs = render(namespace="gpu-ops")
    sa = find(objs, "ServiceAccount", "controller")["metadata"]
    (subject,) = find(objs, "ClusterRoleBinding", "controller")["subjects"]
    assert (subject["name"], subject["namespace"]) == (sa["name"], "gpu-ops")
    vap = find(objs, "ValidatingAdmissionPolicy", "controller")
    (cond,) = vap["spec"]["matchConditions"]
    user = f"system:serviceaccount:gpu-ops:{sa['name']}"
    assert cond["expression"] == f'request.userInfo.username == "{user}"'
    (rule,) = vap["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == [""] and rule["resources"] == ["pods", "pods/*"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    assert vap["spec"]["failurePolicy"] == "Fail"
    text = json.dumps(vap["spec"])
    assert "gpudra.io/topology" in text and "gpudra.io/Placement" in text
    binding = find(objs, "ValidatingAdmissionPolicyBinding", "controller")
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}
    for off in (
        {"admission": {"controllerPodPolicy": False}},
        {"controller": {"enabled": False}},
    ):
        left = [o for o in render(off) if "AdmissionPolicy" in o["kind"]]
        assert all(
            o["metadata"]["labels"]["app.kubernetes.io/component"] != "controller" for o in left
        )
    assert find(
        render({"admission": {"controllerPodPolicy": False}}),
        "ValidatingAdmissionPolicy",
        "kubelet-plugin",
    )


@pytest.mark.parametrize(
    ("kube_version", "api_versions", "rendered"),
    [
        ("1.37.2", (MAP,), True),
        ("1.36.0", (MAP,), True),
        ("1.34.4", (MAP,), False),  # v1 is not served before 1.36, whatever the client says
        ("1.37.2", (), False),  # the server does not serve it (disabled)
    ],
)
def test_scheduling_gate_policy_only_where_the_server_serves_it(
    kube_version: str, api_versions: tuple[str, ...], rendered: bool
) -> None:
    objs = render(kube_version=kube_version, api_versions=api_versions)
    kinds = {o["kind"] for o in objs}
    assert ("MutatingAdmissionPolicy" in kinds) is rendered
    assert ("MutatingAdmissionPolicyBinding" in kinds) is rendered
    off = render(
        {"admission": {"schedulingGate": {"enabled": False}}},
        kube_version=kube_version,
        api_versions=api_versions,
    )
    assert "MutatingAdmissionPolicy" not in {o["kind"] for o in off}


def test_components_can_be_turned_off_and_metrics_services_follow() -> None:
    only_ctrl = render({"kubeletPlugin": {"enabled": False}})
    kinds = [o["kind"] for o in only_ctrl]
    assert "DaemonSet" not in kinds
    assert [o["metadata"]["name"] for o in only_ctrl if "AdmissionPolicy" in o["kind"]] == [
        "gpudra-controller-own-pod-writes",  # the controller's, not the daemon's
        "gpudra-controller-own-pod-writes",
    ]
    assert [o["metadata"]["name"] for o in only_ctrl if o["kind"] == "Service"] == [
        "gpudra-controller-metrics"
    ]
    monitors = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}})
    sms = [o for o in monitors if o["kind"] == "ServiceMonitor"]
    assert len(sms) == 2 and all(o["metadata"]["labels"]["r"] == "p" for o in sms)
    none = render({"metrics": {"service": False}})
    assert "Service" not in {o["kind"] for o in none}


def test_the_daemon_is_probed_on_its_own_health_endpoints() -> None:
    c = find(render({}), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {p["name"] for p in c["ports"]} == {"metrics"}
    off = find(render({"kubeletPlugin": {"metricsPort": 0}}), "DaemonSet")
    assert "livenessProbe" not in off["spec"]["template"]["spec"]["containers"][0]


def test_the_deploy_device_classes_are_the_charts() -> None:
    """One definition of the DeviceClasses: ``deploy/deviceclasses.yaml`` (what the demo and
    the tests apply) must be what the chart creates with its defaults, labels aside."""
    rendered = {}
    for obj in render():
        if obj["kind"] == "DeviceClass":
            obj["metadata"].pop("labels", None)
            rendered[obj["metadata"]["name"]] = obj
    assert rendered == shipped()
    assert set(rendered) == {"gpu.gpudra.io", "mig.gpudra.io"}


def test_the_gpu_class_serves_an_extended_resource_only_when_asked() -> None:
    def classes(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            o["metadata"]["name"]: o["spec"] for o in render(values) if o["kind"] == "DeviceClass"
        }

    assert all("extendedResourceName" not in spec for spec in classes({}).values())
    on = classes({"deviceClasses": {"extendedResourceName": "nvidia.com/gpu"}})
    assert on["gpu.gpudra.io"]["extendedResourceName"] == "nvidia.com/gpu"
    assert "extendedResourceName" not in on["mig.gpudra.io"]


@pytest.mark.parametrize(
    ("values", "verbosity", "log_format"),
    [
        pytest.param({}, 0, None, id="defaults: no flags"),
        pytest.param({"debug": True}, 4, None, id="debug is -v"),
        pytest.param({"logVerbosity": 6}, 6, None, id="logVerbosity"),
        pytest.param({"debug": True, "logVerbosity": 7}, 7, None, id="more than debug"),
        pytest.param({"logFormat": "json"}, 0, "json", id="json"),
    ],
)
def test_logging_values_become_gpudras_global_flags(
    values: dict[str, Any], verbosity: int, log_format: str | None
) -> None:
    from gpudra.cli.main import bare_verbose, parser

    objs = render(values)
    for obj in (find(objs, "DaemonSet"), find(objs, "Deployment")):
        argv = obj["spec"]["template"]["spec"]["containers"][0]["args"]
        args, _ = parser().parse_known_args(bare_verbose(argv))
        assert (args.verbosity, args.log_format) == (verbosity, log_format), argv


def test_logging_values_are_checked_by_the_schema() -> None:
    for bad in ("logVerbosity=8", "logFormat=xml"):
        out = helm("template", "t", str(CHART), "--set", bad, check=False)
        assert out.returncode != 0 and bad.split("=")[0] in out.stderr, out.stderr
