"""Service-account identities for tests, as a pod would hold them.

``pod_token`` asks the real API server's TokenRequest API for a token of a ServiceAccount bound
to a pod; when the pod is on a node, the server puts the node's name and UID in the token and
authenticates it with ``authentication.kubernetes.io/node-name`` (what the chart's admission
policy checks).  ``token_kubeconfig`` turns a token into a kubeconfig for the gpudra CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gpudra.kube import KubeClient, resources


def request_token(
    kube: KubeClient, namespace: str, service_account: str, pod: dict[str, Any] | None = None
) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 3600}
    if pod is not None:
        spec["boundObjectRef"] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        }
    path = resources.SERVICEACCOUNTS.path(
        namespace=namespace, name=service_account, subresource="token"
    )
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    answer = kube.transport.request_json("POST", path, body=body)
    return str(answer["status"]["token"])


def token_kubeconfig(admin_kubeconfig: Path, token: str, out: Path) -> Path:
    """A kubeconfig for the same server and CA as ``admin_kubeconfig``, authenticating with
    ``token``."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }
    out.write_text(json.dumps(config))
    return out


def pod_on_node(
    kube: KubeClient, namespace: str, name: str, service_account: str, node: str
) -> dict[str, Any]:
    """A pod of ``service_account`` bound to ``node`` (kwok runs it), for a node-bound token."""
    return kube.create(
        resources.PODS,
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "serviceAccountName": service_account,
                "nodeName": node,
                "containers": [{"name": "c", "image": "gpudra"}],
            },
        },
        namespace=namespace,
    )
