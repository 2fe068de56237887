"""The command line of every control-plane component (pure: data in, argv out).

Decisions encoded here: everything binds to 127.0.0.1 (most components default to all
interfaces); the apiserver, kcm and scheduler get the same ``--feature-gates``; no leader
election (one replica each); the apiserver's rate limits and endpoint reconciler are off (a
test cluster, loopback address); kwok manages only nodes annotated ``kwok.x-k8s.io/node=fake``
(a real node's kubelet, `gpudra_testkit.localcluster.realnode`, joins beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpudra_testkit.localcluster.binaries import Binaries
from gpudra_testkit.localcluster.featuregates import ApiSettings
from gpudra_testkit.localcluster.pki import Pki

LOOPBACK = "127.0.0.1"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one cluster, all on 127.0.0.1."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd}"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver}"


@dataclass(frozen=True)
class Layout:
    """Everything the command lines refer to."""

    binaries: Binaries
    settings: ApiSettings
    pki: Pki
    ports: Ports
    work_dir: Path
    kubeconfig: Path
    kwok_stages: Path

    def gate_args(self) -> list[str]:
        gates = self.settings.gates_flag
        return [f"--feature-gates={gates}"] if gates else []


def etcd(lay: Layout) -> list[str]:
    peer = f"http://{LOOPBACK}:{lay.ports.etcd_peer}"
    return [
        str(lay.binaries.etcd),
        "--name=default",
        f"--data-dir={lay.work_dir / 'etcd-data'}",
        f"--listen-client-urls={lay.ports.etcd_url}",
        f"--advertise-client-urls={lay.ports.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        # One member and no peers: a short election timeout only makes it lead sooner.
        "--heartbeat-interval=10",
        "--election-timeout=100",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def kube_apiserver(lay: Layout) -> list[str]:
    runtime = lay.settings.runtime_config_flag
    return [
        str(lay.binaries.kube_apiserver),
        f"--etcd-servers={lay.ports.etcd_url}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={lay.ports.apiserver}",
        f"--tls-cert-file={lay.pki.serving_cert}",
        f"--tls-private-key-file={lay.pki.serving_key}",
        f"--client-ca-file={lay.pki.ca_cert}",
        f"--cert-dir={lay.pki.ca_cert.parent}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={lay.pki.sa_pub}",
        f"--service-account-signing-key-file={lay.pki.sa_key}",
        # Node: a real node's kubelet runs with its own system:node credentials, as in a real
        # cluster (NodeRestriction confines it to its node); the apiserver reaches kubelets
        # (logs, exec) with the admin client certificate, which they trust through the CA.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={lay.pki.admin_cert}",
        f"--kubelet-client-key={lay.pki.admin_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=0",
        "--max-mutating-requests-inflight=0",
        "--profiling=false",
        *lay.gate_args(),
        *([f"--runtime-config={runtime}"] if runtime else []),
    ]


def _controller_common(lay: Layout, port: int, cert_dir: str) -> list[str]:
    kc = str(lay.kubeconfig)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--cert-dir={lay.work_dir / cert_dir}",
        "--leader-elect=false",
        *lay.gate_args(),
    ]


def kube_controller_manager(lay: Layout) -> list[str]:
    return [
        str(lay.binaries.kube_controller_manager),
        *_controller_common(lay, lay.ports.controller_manager, "kcm-certs"),
        f"--service-account-private-key-file={lay.pki.sa_key}",
        f"--root-ca-file={lay.pki.ca_cert}",
    ]


def kube_scheduler(lay: Layout) -> list[str]:
    return [
        str(lay.binaries.kube_scheduler),
        *_controller_common(lay, lay.ports.scheduler, "scheduler-certs"),
    ]


def kwok(lay: Layout) -> list[str]:
    key, value = KWOK_NODE_ANNOTATION
    return [
        str(lay.binaries.kwok),
        f"--kubeconfig={lay.kubeconfig}",
        f"--config={lay.kwok_stages}",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
        f"--server-address={LOOPBACK}:{lay.ports.kwok}",
    ]


def health_urls(ports: Ports) -> dict[str, str]:
    """The health endpoint of each component started after the apiserver."""
    return {
        "kube-controller-manager": f"https://{LOOPBACK}:{ports.controller_manager}/healthz",
        "kube-scheduler": f"https://{LOOPBACK}:{ports.scheduler}/healthz",
        "kwok": f"http://{LOOPBACK}:{ports.kwok}/healthz",
    }
