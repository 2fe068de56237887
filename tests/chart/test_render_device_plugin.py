"""The chart's classic device plugin (``devicePlugin``), rendered by the real helm CLI: off by
default, no API access, a config the daemon accepts, NVIDIA's config file unchanged, and the
GPU split with the DRA kubelet plugin refused where it would serve a GPU twice."""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudra.cli.kubelet_plugin import settings_from
from gpudra.cli.settings_flags import config_file_values
from gpudra.deviceplugin.config import parse_config
from gpudra.settings import DevicePluginSettings
from gpudra_testkit.harness.chart import CHART, find, helm, render

DP = "device-plugin"
ONLY_DP = {"devicePlugin": {"enabled": True}, "kubeletPlugin": {"enabled": False}}
MOCK_DP = {**ONLY_DP, "mock": {"enabled": True, "profile": "dgx1-v100"}}
SPLIT: dict[str, dict[str, Any]] = {
    "kubeletPlugin": {"gpus": "0-3"},
    "devicePlugin": {"enabled": True, "gpus": "4-7"},
}
SPLIT_MESSAGE = (
    "kubeletPlugin.gpus and devicePlugin.gpus must name disjoint GPU sets when both are "
    "enabled (e.g. 0-3 and 4-7): a GPU is served by one of them, never both; overlaps the "
    "chart cannot see are refused by the daemons at start"
)
# NVIDIA's time-slicing example (k8s-device-plugin README, "Shared Access to GPUs")
TIME_SLICING = {
    "version": "v1",
    "sharing": {
        "timeSlicing": {
            "renameByDefault": False,
            "failRequestsGreaterThanOne": True,
            "resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
        }
    },
}


def template_error(values: dict[str, Any]) -> str:
    """helm template's stderr for values that must not render."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(values, f)
        f.flush()
        p = helm("template", "t", str(CHART), "--values", f.name, check=False)
    assert p.returncode != 0, "rendered, but should have failed"
    return p.stderr


def camel(names: Iterable[str]) -> set[str]:
    return {re.sub(r"_(.)", lambda m: m.group(1).upper(), k) for k in names}


def plugin_settings(objs: list[dict[str, Any]], tmp_path: Path) -> DevicePluginSettings:
    """What the device plugin makes of the rendered config file (the settings model and the
    CLI's config-file reader: unknown keys refused)."""
    path = tmp_path / "dp-config.yaml"
    path.write_text(find(objs, "ConfigMap", DP)["data"]["config.yaml"])
    return DevicePluginSettings(node_name="n1", **config_file_values(DevicePluginSettings, path))


def pod_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objs, "DaemonSet", DP)["spec"]["template"]["spec"]
    return spec


def test_the_device_plugin_is_off_by_default() -> None:
    for values in ({}, {"mock": {"enabled": True}}):
        objs = render(values)
        labels = [(o["metadata"].get("labels") or {}) for o in objs]
        assert DP not in {ls.get("app.kubernetes.io/component") for ls in labels}


def test_the_device_plugin_runs_without_api_access() -> None:
    objs = render({**MOCK_DP, "apiServer": {"host": "10.0.0.1", "port": 6443}})
    sa = find(objs, "ServiceAccount", DP)
    assert sa["automountServiceAccountToken"] is False
    pod = pod_of(objs)
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    c = pod["containers"][0]
    assert (c["name"], c["command"]) == (DP, ["gpudra"])
    assert c["args"] == [DP, "--config=/etc/gpudra/config.yaml"]
    env = {e["name"]: e for e in c["env"]}
    assert set(env) == {"GPUDRA_NODE_NAME"}  # no API server address, no kubeconfig
    assert env["GPUDRA_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # no RBAC for it, whatever else is enabled
    for values in (MOCK_DP, {**SPLIT, "mock": {"enabled": True}}):
        for o in render(values):
            if o["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                names = {s.get("name") for s in o.get("subjects") or []}
                assert sa["metadata"]["name"] not in names, o["metadata"]["name"]


def test_mock_config_is_valid_settings_and_every_path_is_a_mounted_host_path(
    tmp_path: Path,
) -> None:
    objs = render(MOCK_DP)
    s = plugin_settings(objs, tmp_path)
    assert (s.backend, s.profile) == ("mock", "dgx1-v100")
    assert (s.kubelet_dir, s.cdi_dir) == (Path("/var/lib/kubelet"), Path("/var/run/cdi"))
    assert (s.resource_name, s.mig_strategy, s.device_id_strategy) == (
        "nvidia.com/gpu",
        "none",
        "uuid",
    )
    assert s.device_list_strategy == ("envvar", "cdi-cri")
    assert s.pass_device_specs is False and s.gpus.every and s.metrics_port == 0
    assert s.mock_state_file == s.kubelet_dir / "gpudra" / "device-plugin" / "mock-state.json"
    pod = pod_of(objs)
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert not sc.get("privileged")
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["MKNOD"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert set(host.values()) == {
        str(s.device_plugin_path),
        str(s.kubelet_dir / "gpudra"),
        str(s.cdi_dir),
    }
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert all(mounts[name] == path for name, path in host.items())  # same path inside
    writable = [Path(p) for p in host.values()]
    for path in (s.mock_state_file, s.dev_root, s.gpu_lock_path, s.kubelet_socket):
        assert path is not None and any(path.is_relative_to(w) for w in writable), path


def test_real_mode_is_the_kubelet_plugins_real_mode(tmp_path: Path) -> None:
    objs = render(ONLY_DP)
    s = plugin_settings(objs, tmp_path)
    assert s.backend == "nvml" and s.profile is None and s.mock_state_file is None
    c = pod_of(objs)["containers"][0]
    assert c["securityContext"] == {"privileged": True}
    host = {v["name"]: v["hostPath"]["path"] for v in pod_of(objs)["volumes"] if "hostPath" in v}
    assert host["dev"] == "/dev" and host["driver-root"] == "/"
    assert (
        "/driver-root/usr/lib64" in {e["name"]: e.get("value") for e in c["env"]}["LD_LIBRARY_PATH"]
    )
    rc = render({**ONLY_DP, "kubeletPlugin": {"enabled": False, "real": {"runtimeClassName": "n"}}})
    assert pod_of(rc)["runtimeClassName"] == "n"
    assert "driver-root" not in {v["name"] for v in pod_of(rc)["volumes"]}


def test_values_reach_the_daemon_and_the_schema_knows_every_setting(tmp_path: Path) -> None:
    values = {
        "kubeletDir": "/k/",
        "cdiDir": "/cdi",
        "resourceName": "example.com/gpu",
        "migStrategy": "mixed",
        "deviceListStrategy": ["cdi-cri"],
        "deviceIdStrategy": "index",
        "passDeviceSpecs": True,
        "gpus": "0,2",
        "metricsPort": 9402,
        "extraConfig": {"nvmlProbeIntervalS": 5, "gpus": "ignored"},
    }
    objs = render({**ONLY_DP, "devicePlugin": {"enabled": True, **values}})
    s = plugin_settings(objs, tmp_path)
    assert (s.kubelet_dir, s.cdi_dir, s.resource_name) == (
        Path("/k"),
        Path("/cdi"),
        "example.com/gpu",
    )
    assert (s.mig_strategy, s.device_list_strategy, s.device_id_strategy) == (
        "mixed",
        ("cdi-cri",),
        "index",
    )
    assert s.pass_device_specs is True and str(s.gpus) == "0,2"
    assert (s.metrics_port, s.nvml_probe_interval_s) == (9402, 5)
    c = pod_of(objs)["containers"][0]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    svc = find(objs, "Service", DP)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["ports"][0]["port"] == 9402
    # every setting but the node (downward API), the NVIDIA file (devicePlugin.config), the
    # lock dir (mounted, shared with the DRA plugin) and the socket dir (mounted:
    # <kubeletDir>/device-plugins) is an extraConfig key
    schema = json.loads((CHART / "values.schema.json").read_text())
    extra = schema["properties"]["devicePlugin"]["properties"]["extraConfig"]["properties"]
    fields = camel(DevicePluginSettings.model_fields)
    mounted = {"gpuLockDir", "devicePluginDir"}
    assert set(extra) == fields - {"nodeName", "devicePluginConfig"} - mounted
    assert set(yaml.safe_load(find(objs, "ConfigMap", DP)["data"]["config.yaml"])) <= fields


def test_nvidias_time_slicing_config_is_rendered_unchanged_and_passed_as_a_file(
    tmp_path: Path,
) -> None:
    objs = render({**MOCK_DP, "devicePlugin": {"enabled": True, "config": TIME_SLICING}})
    text = find(objs, "ConfigMap", DP)["data"]["nvidia-config.yaml"]
    assert yaml.safe_load(text) == TIME_SLICING
    ts = parse_config(text, source="nvidia-config.yaml").time_slicing
    assert ts is not None and ts.fail_requests_greater_than_one and not ts.rename_by_default
    assert [(r.name, r.replicas, r.devices) for r in ts.resources] == [("nvidia.com/gpu", 4, "all")]
    pod = pod_of(objs)
    c = pod["containers"][0]
    assert c["args"][-1] == "--device-plugin-config=/etc/gpudra-dp/nvidia-config.yaml"
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/gpudra-dp")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["items"] == [
        {"key": "nvidia-config.yaml", "path": "nvidia-config.yaml"}
    ]
    # the daemon's own config does not name it a second time
    assert plugin_settings(objs, tmp_path).device_plugin_config is None
    assert "nvidia-config.yaml" not in find(render(MOCK_DP), "ConfigMap", DP)["data"]


@pytest.mark.parametrize(
    ("values", "where", "says"),
    [
        ({"migStrategy": "bogus"}, "/devicePlugin/migStrategy", "must be one of"),
        (
            {"deviceListStrategy": ["volume-mounts"]},
            "/devicePlugin/deviceListStrategy/0",
            "cdi-cri",
        ),
        ({"deviceListStrategy": []}, "/devicePlugin/deviceListStrategy", "minItems"),
        ({"deviceIdStrategy": "serial"}, "/devicePlugin/deviceIdStrategy", "must be one of"),
        ({"gpus": "4-x"}, "/devicePlugin/gpus", "pattern"),
        ({"resourceName": "gpu"}, "/devicePlugin/resourceName", "pattern"),
        ({"extraConfig": {"nodeName": "x"}}, "/devicePlugin/extraConfig", "nodeName"),
        ({"config": {"version": "v2"}}, "/devicePlugin/config/version", "v1"),
        ({"config": {"flags": {}}}, "/devicePlugin/config", "version"),
        (
            {"config": {"version": "v1", "sharing": {"mps": {"resources": []}}}},
            "/devicePlugin/config/sharing",
            "'mps' not allowed",
        ),
        (
            {
                "config": {
                    "version": "v1",
                    "sharing": {"timeSlicing": {"resources": [{"name": "g", "replicas": 0}]}},
                }
            },
            "/devicePlugin/config/sharing/timeSlicing/resources/0/replicas",
            "minimum",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_invalid_device_plugin_values_fail_naming_the_key(
    values: dict[str, Any], where: str, says: str
) -> None:
    err = template_error({**ONLY_DP, "devicePlugin": {"enabled": True, **values}})
    assert f"at '{where}'" in err and says in err, err


def test_config_flags_that_disagree_with_the_values_fail_with_what_to_set() -> None:
    config = {**TIME_SLICING, "flags": {"migStrategy": "mixed"}}
    err = template_error({**ONLY_DP, "devicePlugin": {"enabled": True, "config": config}})
    assert 'devicePlugin.config.flags.migStrategy is "mixed"' in err
    assert 'set devicePlugin.migStrategy to "mixed"' in err
    agreeing = {
        **TIME_SLICING,
        "flags": {
            "migStrategy": "mixed",
            "plugin": {"deviceListStrategy": "envvar", "deviceIDStrategy": "uuid"},
        },
    }
    dp = {"enabled": True, "config": agreeing, "migStrategy": "mixed"}
    objs = render({**ONLY_DP, "devicePlugin": {**dp, "deviceListStrategy": ["envvar"]}})
    assert parse_config(find(objs, "ConfigMap", DP)["data"]["nvidia-config.yaml"], source="x")
    err = template_error({**ONLY_DP, "devicePlugin": dp})
    assert "devicePlugin.config.flags.plugin.deviceListStrategy" in err


@pytest.mark.parametrize(
    ("kubelet_plugin", "device_plugin", "fails"),
    [
        ("all", "all", True),  # the defaults
        ("all", "4-7", True),
        ("0-3", "all", True),
        ("0-3", "0-3", True),
        ("0-3", "2,5", True),
        ("10-12", "3-11", True),
        ("0-3", "4-7", False),
        ("0,2", "1,3", False),
        ("0-1,5", "2-4,6", False),
        ("none", "all", False),
        ("all", "none", False),
    ],
)
def test_both_daemons_need_disjoint_gpu_sets(
    kubelet_plugin: str, device_plugin: str, fails: bool, tmp_path: Path
) -> None:
    values = {
        "kubeletPlugin": {"gpus": kubelet_plugin},
        "devicePlugin": {"enabled": True, "gpus": device_plugin},
    }
    if fails:
        assert SPLIT_MESSAGE in template_error(values)
        return
    objs = render(values)
    assert str(plugin_settings(objs, tmp_path).gpus) == device_plugin
    path = tmp_path / "kp.yaml"
    path.write_text(find(objs, "ConfigMap", "kubelet-plugin")["data"]["config.yaml"])
    kp = settings_from(argparse.Namespace(config=path, node_name="n1"))
    assert str(kp.gpus) == kubelet_plugin


def test_both_daemons_lock_their_gpus_in_the_same_mounted_host_dir(tmp_path: Path) -> None:
    objs = render({**SPLIT, "mock": {"enabled": True}})
    dp = plugin_settings(objs, tmp_path)
    path = tmp_path / "kp.yaml"
    path.write_text(find(objs, "ConfigMap", "kubelet-plugin")["data"]["config.yaml"])
    kp = settings_from(argparse.Namespace(config=path, node_name="n1"))
    assert kp.gpu_lock_path == dp.gpu_lock_path
    kp_pod = find(objs, "DaemonSet", "kubelet-plugin")["spec"]["template"]["spec"]
    assert str(kp.gpu_lock_path) in {
        v["hostPath"]["path"] for v in kp_pod["volumes"] if "hostPath" in v
    }
    err = template_error({**SPLIT, "devicePlugin": {**SPLIT["devicePlugin"], "kubeletDir": "/x"}})
    assert "devicePlugin.kubeletDir (/x) must be kubeletPlugin.kubeletDir" in err


def test_notes_tell_how_to_switch_from_nvidias_device_plugin() -> None:
    def notes(*sets: str) -> str:
        args = [a for s in sets for a in ("--set", s)]
        out = helm("install", "t", str(CHART), "--dry-run=client", *args).stdout
        return out.split("NOTES:", 1)[1]

    assert "NVIDIA's device plugin" not in notes()
    text = notes("devicePlugin.enabled=true", "kubeletPlugin.enabled=false")
    assert "Switching from NVIDIA's device plugin" in text
    for said in ("devicePlugin.config", "devicePlugin.migStrategy", "DEVICE_LIST_STRATEGY"):
        assert said in text
    assert "nvidia.com/gpu" in text
