"""A real local Kubernetes control plane (etcd, kube-apiserver, kcm, kube-scheduler, kwok) for
integration tests and the demo; binaries come from ``make cluster-binaries``.

Uses only the standard library and `gpudra.kube`.
"""

from gpudra_testkit.localcluster.binaries import (
    Binaries,
    BinariesMissing,
    default_k8s_version,
    locate,
)
from gpudra_testkit.localcluster.featuregates import ApiSettings, KubeVersion, api_settings
from gpudra_testkit.localcluster.launcher import LocalCluster
from gpudra_testkit.localcluster.nodes import create_fake_node, fake_node, wait_node_ready
from gpudra_testkit.localcluster.probes import ClusterStartError

__all__ = [
    "ApiSettings",
    "Binaries",
    "BinariesMissing",
    "ClusterStartError",
    "KubeVersion",
    "LocalCluster",
    "api_settings",
    "create_fake_node",
    "default_k8s_version",
    "fake_node",
    "locate",
    "wait_node_ready",
]
