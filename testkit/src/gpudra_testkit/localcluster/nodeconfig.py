"""The configuration files and command lines of a real node (pure: layout in, text out).

The settings that make a kubelet + containerd run on this project's CI VM are recorded in
docs/DESIGN.md ("Real node"); the ones that matter:

* containerd: everything under the node's work dir (root, state, sockets, runc root, CNI
  config and IPAM); CDI specs read from the node's CDI dir; the sandbox image is a local
  image that is never pulled; ``restrict_oom_score_adj`` because root here lacks
  CAP_SYS_RESOURCE (every sandbox fails without it).
* kubelet: cgroupfs driver and ``failCgroupV1: false`` (cgroup v1 host), listening on
  127.0.0.1 only, x509 client auth against the cluster CA (the apiserver calls it with the
  admin certificate for logs/exec), no anonymous access, eviction thresholds that a busy
  scratch disk cannot trip.
* CNI: a bridge with ``isGateway: false`` and ``ipMasq: false``: no ip_forward change and no
  iptables rules (pods need no network in these tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpudra_testkit.localcluster.binaries import NodeBinaries

PAUSE_IMAGE = "localhost/pause:local"
BRIDGE = "gpudrabr0"
POD_SUBNET = "10.88.0.0/16"


@dataclass(frozen=True)
class NodeLayout:
    """Where a real node keeps everything (one work dir) and the ports it listens on."""

    name: str
    work_dir: Path
    kubelet_port: int
    kubelet_healthz_port: int

    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's --root-dir: plugins/, plugins_registry/, pods/, dra_manager_state."""
        return self.work_dir / "kubelet"

    @property
    def plugins_dir(self) -> Path:
        return self.kubelet_root / "plugins"

    @property
    def registry_dir(self) -> Path:
        return self.kubelet_root / "plugins_registry"

    @property
    def cdi_dir(self) -> Path:
        return self.work_dir / "cdi"

    @property
    def pod_logs_dir(self) -> Path:
        return self.work_dir / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.work_dir / "cni" / "net.d"

    @property
    def containerd_config(self) -> Path:
        return self.work_dir / "containerd.toml"

    @property
    def kubelet_config(self) -> Path:
        return self.work_dir / "kubelet-config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.work_dir / "kubelet.kubeconfig"

    @property
    def images_dir(self) -> Path:
        return self.work_dir / "images"


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a TOML basic string is JSON-compatible for paths


def containerd_toml(lay: NodeLayout, bins: NodeBinaries) -> str:
    w = lay.work_dir
    return f"""# containerd of the gpudra local real node {lay.name} (gpudra_testkit.localcluster)
version = 3
root = {_toml_str(w / "containerd-root")}
state = {_toml_str(w / "containerd-state")}
imports = []

[grpc]
  address = {_toml_str(lay.containerd_socket)}

[ttrpc]
  address = {_toml_str(str(lay.containerd_socket) + ".ttrpc")}

[debug]
  level = 'info'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {_toml_str(PAUSE_IMAGE)}

  [plugins.'io.containerd.cri.v1.runtime']
    cdi_spec_dirs = [{_toml_str(lay.cdi_dir)}]
    restrict_oom_score_adj = true
    enable_criu = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        sandboxer = 'podsandbox'
        disable_pause_image_pull = true
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {_toml_str(bins.runc)}
          Root = {_toml_str(w / "runc")}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{_toml_str(bins.cni_bin_dir)}]
      conf_dir = {_toml_str(lay.cni_conf_dir)}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"""


def cni_conflist(lay: NodeLayout) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": "gpudra-real-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "dataDir": str(lay.work_dir / "cni" / "ipam"),
                },
            },
            {"type": "loopback"},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_config(lay: NodeLayout, *, ca_file: Path, gates: dict[str, bool]) -> str:
    sock = f"unix://{lay.containerd_socket}"
    conf = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # 1.35+ refuses cgroup v1 hosts otherwise
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": sock,
        "imageServiceEndpoint": sock,
        "address": "127.0.0.1",
        "port": lay.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": lay.kubelet_healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "AlwaysAllow"},  # only CA-signed clients get this far
        "failSwapOn": False,
        "podLogsDir": str(lay.pod_logs_dir),
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "serializeImagePulls": True,
        "maxPods": 30,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Status and sync as quick as a test wants them.
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "10s",
        "featureGates": dict(sorted(gates.items())),
    }
    return yaml.safe_dump(conf, sort_keys=False)


def kubelet_argv(lay: NodeLayout, bins: NodeBinaries, *, labels: dict[str, str]) -> list[str]:
    label_flag = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return [
        str(bins.kubelet),
        f"--config={lay.kubelet_config}",
        f"--kubeconfig={lay.kubelet_kubeconfig}",
        f"--hostname-override={lay.name}",
        f"--root-dir={lay.kubelet_root}",
        f"--cert-dir={lay.work_dir / 'kubelet-pki'}",
        *([f"--node-labels={label_flag}"] if label_flag else []),
        "--v=2",
    ]


def containerd_argv(lay: NodeLayout, bins: NodeBinaries) -> list[str]:
    return [str(bins.containerd), f"--config={lay.containerd_config}"]
