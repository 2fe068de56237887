"""Pure decisions of the local cluster: gates per version, kubeconfig, binaries, node manifest."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gpudra.kube import KubeClient
from gpudra_testkit.localcluster import binaries, commandlines, kubeconfig
from gpudra_testkit.localcluster.featuregates import KubeVersion, api_settings
from gpudra_testkit.localcluster.nodes import fake_node, is_ready
from gpudra_testkit.localcluster.pki import Pki

OLD_GATES = "DRADeviceTaints=true,DRAPartitionableDevices=true"

GATES = [
    # 1.34 always serves v1alpha3: its scheduler watches DeviceTaintRule once DRADeviceTaints is on
    pytest.param("1.34.4", False, OLD_GATES, "resource.k8s.io/v1alpha3=true", id="1.34"),
    pytest.param("1.35.4", False, OLD_GATES, "", id="1.35"),
    pytest.param("1.36.3", False, "", "", id="1.36-defaults"),
    pytest.param("1.37.2", False, "", "", id="1.37-defaults"),
    pytest.param("v1.34.0", True, OLD_GATES, "resource.k8s.io/v1alpha3=true", id="1.34-rules"),
    pytest.param(
        "1.35.0",
        True,
        "DRADeviceTaintRules=true," + OLD_GATES,
        "resource.k8s.io/v1alpha3=true",
        id="1.35-rules",
    ),
    pytest.param(
        "1.36.3", True, "DRADeviceTaintRules=true", "resource.k8s.io/v1beta2=true", id="1.36-rules"
    ),
    pytest.param("1.37.2", True, "", "", id="1.37-rules-ga"),
]


@pytest.mark.parametrize(("version", "rules", "gates", "runtime"), GATES)
def test_gates_by_version(version: str, rules: bool, gates: str, runtime: str) -> None:
    settings = api_settings(version, device_taint_rules=rules)
    assert settings.gates_flag == gates
    assert settings.runtime_config_flag == runtime


def test_extra_gates_win() -> None:
    settings = api_settings("1.34.4", extra_gates={"DRADeviceTaints": False, "Foo": True})
    assert settings.gates == {
        "DRAPartitionableDevices": True,
        "DRADeviceTaints": False,
        "Foo": True,
    }


@pytest.mark.parametrize("version", ["1.33.5", "2.0.0"])
def test_unsupported_versions(version: str) -> None:
    with pytest.raises(ValueError, match="not supported"):
        api_settings(version)


def test_version_parse() -> None:
    assert KubeVersion.parse("v1.37.2") == KubeVersion(1, 37, 2)
    assert str(KubeVersion.parse("1.36")) == "1.36.0"
    assert KubeVersion.parse("1.34.4") < KubeVersion.parse("1.35.0")
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        KubeVersion.parse("latest")


def test_kubeconfig_render_is_loadable(tmp_path: Path) -> None:
    text = kubeconfig.render(
        server="https://127.0.0.1:12345",
        ca_pem=b"CA PEM",
        client_cert_pem=b"CERT PEM",
        client_key_pem=b"KEY PEM",
    )
    config = json.loads(text)
    assert config["current-context"] == "gpudra-local"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:12345"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA PEM"
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT PEM"
    assert base64.b64decode(user["client-key-data"]) == b"KEY PEM"
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with KubeClient.from_kubeconfig(path) as client:
        assert client.host == "https://127.0.0.1:12345"


def test_versions_env_pins() -> None:
    pins = binaries.read_versions()
    for key in ("DEFAULT_K8S_VERSION", "DEFAULT_ETCD_VERSION", "DEFAULT_KWOK_VERSION"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", pins[key]), key
    assert KubeVersion.parse(pins["DEFAULT_K8S_VERSION"]).minor >= 34
    assert binaries.default_k8s_version() == pins["DEFAULT_K8S_VERSION"]


def test_missing_binaries_say_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDRA_CACHE", str(tmp_path))
    with pytest.raises(binaries.BinariesMissing, match="make cluster-binaries") as info:
        binaries.locate()
    assert "kube-apiserver" in str(info.value)
    with pytest.raises(binaries.BinariesMissing, match=r"K8S_VERSION=1\.34\.4"):
        binaries.locate("1.34.4")


def test_expected_paths(tmp_path: Path) -> None:
    found = binaries.expected("v1.34.4", cache=tmp_path)
    assert found.k8s_version == "1.34.4"
    assert found.kube_apiserver == tmp_path / "k8s-v1.34.4" / "bin" / "kube-apiserver"
    assert found.etcd.parent.parent.name.startswith("etcd-v")


def test_fake_node_manifest() -> None:
    node = fake_node(
        "n1",
        labels={"gpu": "yes"},
        cpu="8",
        extra_resources={"example.com/x": "2"},
        taints=[{"key": "k", "effect": "NoSchedule"}],
    )
    assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert node["metadata"]["labels"]["gpu"] == "yes"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert node["status"]["capacity"] == node["status"]["allocatable"]
    assert node["status"]["capacity"]["cpu"] == "8"
    assert node["status"]["capacity"]["example.com/x"] == "2"
    assert node["spec"]["taints"] == [{"key": "k", "effect": "NoSchedule"}]
    assert not is_ready(node)
    node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert is_ready(node)


def test_stage_file_has_the_five_stages() -> None:
    text = (binaries.controlplane_dir() / "kwok-stages.yaml").read_text()
    names = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("  name:")
    ]
    assert names == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]


def _layout(version: str, tmp_path: Path, **kw: bool) -> commandlines.Layout:
    pem = {f: tmp_path / f"{f}.pem" for f in Pki.__dataclass_fields__}
    return commandlines.Layout(
        binaries=binaries.expected(version, cache=tmp_path),
        settings=api_settings(version, **kw),
        pki=Pki(**pem),
        ports=commandlines.Ports(2379, 2380, 6443, 10257, 10259, 10247),
        work_dir=tmp_path,
        kubeconfig=tmp_path / "kubeconfig",
        kwok_stages=tmp_path / "stages.yaml",
    )


ALL_COMMANDS = [
    commandlines.etcd,
    commandlines.kube_apiserver,
    commandlines.kube_controller_manager,
    commandlines.kube_scheduler,
    commandlines.kwok,
]


@pytest.mark.parametrize("version", ["1.34.4", "1.35.4", "1.36.3", "1.37.2"])
def test_one_gate_string_for_all_kube_components(version: str, tmp_path: Path) -> None:
    lay = _layout(version, tmp_path)
    gates = [
        [a for a in build(lay) if a.startswith("--feature-gates")]
        for build in (
            commandlines.kube_apiserver,
            commandlines.kube_controller_manager,
            commandlines.kube_scheduler,
        )
    ]
    assert gates[0] == gates[1] == gates[2]
    assert bool(gates[0]) == (KubeVersion.parse(version).minor < 36)


def test_runtime_config_only_on_the_apiserver(tmp_path: Path) -> None:
    lay = _layout("1.36.3", tmp_path, device_taint_rules=True)
    argv = commandlines.kube_apiserver(lay)
    assert "--runtime-config=resource.k8s.io/v1beta2=true" in argv
    for build in ALL_COMMANDS[2:]:
        assert not [a for a in build(lay) if a.startswith("--runtime-config")]


@pytest.mark.parametrize("build", ALL_COMMANDS, ids=lambda f: f.__name__)
def test_every_address_is_loopback(build: Any, tmp_path: Path) -> None:
    argv = build(_layout("1.37.2", tmp_path))
    flags = [a.split("=", 1) for a in argv[1:]]
    addresses = [
        f"{k}={v}"
        for k, v in flags
        if "address" in k or k.endswith("-urls") or k.endswith("cluster")
    ]
    assert addresses, argv
    for arg in addresses:
        assert "127.0.0.1" in arg and "0.0.0.0" not in arg, arg
