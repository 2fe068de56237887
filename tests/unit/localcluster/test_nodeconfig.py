"""The real node's config files carry the settings that make it run on the CI VM
(docs/DESIGN.md, "Real node") and keep it inside its work dir."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml

from gpudra_testkit.localcluster import nodeconfig
from gpudra_testkit.localcluster.binaries import NodeBinaries

LAY = nodeconfig.NodeLayout("n1", Path("/w/n1"), kubelet_port=21000, kubelet_healthz_port=21001)
BINS = NodeBinaries(
    kubelet=Path("/c/kubelet"),
    containerd=Path("/c/containerd"),
    ctr=Path("/c/ctr"),
    shim=Path("/c/containerd-shim-runc-v2"),
)


def test_containerd_config() -> None:
    conf = tomllib.loads(nodeconfig.containerd_toml(LAY, BINS))
    assert conf["root"] == "/w/n1/containerd-root" and conf["state"] == "/w/n1/containerd-state"
    assert conf["grpc"]["address"] == str(LAY.containerd_socket)
    runtime = conf["plugins"]["io.containerd.cri.v1.runtime"]
    # root here lacks CAP_SYS_RESOURCE: without this every pod sandbox fails
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cdi_spec_dirs"] == [str(LAY.cdi_dir)]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"]["BinaryName"] == "/usr/sbin/runc"
    assert runc["options"]["Root"] == "/w/n1/runc"  # not the host's /run/runc
    assert runc["disable_pause_image_pull"] is True
    images = conf["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == nodeconfig.PAUSE_IMAGE
    assert runtime["cni"]["conf_dir"] == str(LAY.cni_conf_dir)


def test_kubelet_config_and_flags() -> None:
    conf = yaml.safe_load(
        nodeconfig.kubelet_config(LAY, ca_file=Path("/p/ca.crt"), gates={"DRADeviceTaints": True})
    )
    assert conf["failCgroupV1"] is False and conf["cgroupDriver"] == "cgroupfs"
    assert conf["address"] == "127.0.0.1" and conf["port"] == 21000
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authentication"]["x509"]["clientCAFile"] == "/p/ca.crt"
    assert conf["containerRuntimeEndpoint"] == f"unix://{LAY.containerd_socket}"
    assert conf["featureGates"] == {"DRADeviceTaints": True}
    argv = nodeconfig.kubelet_argv(LAY, BINS, labels={"a": "b"})
    assert f"--root-dir={LAY.kubelet_root}" in argv and "--hostname-override=n1" in argv
    assert "--node-labels=a=b" in argv
    assert not [a for a in argv if a.startswith("--node-ip")]  # loopback node IPs are refused


def test_cni_touches_neither_ip_forward_nor_iptables() -> None:
    conf = json.loads(nodeconfig.cni_conflist(LAY))
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == "/w/n1/cni/ipam"
