"""Fake nodes for the local cluster: Node objects that kwok keeps Ready.

A node carrying the ``kwok.x-k8s.io/node=fake`` annotation is managed by the cluster's kwok:
it becomes Ready (keeping the capacity declared here), its lease is renewed, and pods bound to it
turn Running.  `fake_node` builds the object (pure); `create_fake_node` creates it and waits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from gpudra.api.meta import RawObject
from gpudra.kube import KubeClient, resources
from gpudra_testkit.localcluster.commandlines import KWOK_NODE_ANNOTATION


def fake_node(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    cpu: str = "32",
    memory: str = "256Gi",
    pods: str = "110",
    extra_resources: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, Any]] = (),
) -> RawObject:
    """A Node manifest that kwok will manage; capacity == allocatable."""
    capacity = {"cpu": cpu, "memory": memory, "pods": pods, **(extra_resources or {})}
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        # Admission adds node.kubernetes.io/not-ready:NoSchedule on create; kcm's node
        # lifecycle controller removes it once kwok reports Ready (see `wait_node_ready`).
        "spec": {"taints": [dict(t) for t in taints]},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def is_ready(node: RawObject) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def create_fake_node(
    client: KubeClient, name: str, *, wait: bool = True, timeout: float = 60.0, **kw: Any
) -> RawObject:
    """Create a kwok-managed node (see `fake_node` for the options) and wait until Ready."""
    client.create(resources.NODES, fake_node(name, **kw))
    return (
        wait_node_ready(client, name, timeout=timeout)
        if wait
        else client.get(resources.NODES, name)
    )


def wait_node_ready(client: KubeClient, name: str, *, timeout: float = 60.0) -> RawObject:
    """Poll until the node is Ready and no longer carries the not-ready taint."""
    deadline = time.monotonic() + timeout
    while True:
        node = client.get(resources.NODES, name)
        taints = (node.get("spec") or {}).get("taints") or []
        not_ready = any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints)
        if is_ready(node) and not not_ready:
            return node
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {name} not Ready after {timeout}s: {node.get('status')}")
        time.sleep(0.2)
