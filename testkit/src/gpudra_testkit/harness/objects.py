"""Objects that tests put into a test cluster, and what they read back from it.

The writes stand in for a component that the test does not run: `apply_file` applies a
manifest as ``kubectl apply`` would, `publish` writes a mock node's slices as its node daemon
would, `allocated_claim` writes an allocation by hand as an allocator would (to feed a daemon
bad input).  The reads are the few questions many tests ask: which node a pod is bound to,
which slices a node has, whether an object is gone.  The objects' shapes come from
`gpudra_testkit.builders`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpudra.kube import KubeClient, NotFound, Resource, resources
from gpudra_testkit.builders import claim, exactly, node_owner, profile_slices
from gpudra_testkit.harness.waiting import allocation

MANIFEST_KINDS = {
    "DeviceClass": resources.DEVICECLASSES,
    "ResourceClaimTemplate": resources.RESOURCECLAIMTEMPLATES,
    "ResourceClaim": resources.RESOURCECLAIMS,
    "Pod": resources.PODS,
}


def apply_file(kube: KubeClient, path: Path, namespace: str | None = None) -> None:
    """Server-side apply every document of a manifest (DeviceClasses, claims, templates, pods)."""
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            res = MANIFEST_KINDS[doc["kind"]]
            kube.apply(res, doc, field_manager="gpudra-tests", namespace=namespace)


def publish(
    kube: KubeClient,
    node: dict[str, Any],
    profile: str,
    managed: frozenset[int] = frozenset(),
    dynamic_mig: frozenset[int] = frozenset(),
    *,
    shared: frozenset[int] = frozenset(),
    shares: int = 0,
) -> None:
    """Publish a node's slices as its daemon would (``managed``: controller-managed GPUs;
    ``shared``, ``shares``: GPUs for consumable capacity, as ``--shared-gpus``,
    ``--gpu-shares``)."""
    name = node["metadata"]["name"]
    for s in profile_slices(
        profile,
        name,
        managed=managed,
        dynamic_mig=dynamic_mig,
        owner=node_owner(node),
        shared=shared,
        shares=shares,
    ):
        kube.create(resources.RESOURCESLICES, s)


def allocated_claim(
    kube: KubeClient,
    namespace: str,
    name: str,
    *,
    driver: str,
    pool: str,
    device: str,
    node: str,
) -> tuple[str, str, str]:
    """A claim whose allocation we write by hand (as an allocator would) to feed bad input;
    returns (namespace, name, uid)."""
    body = claim(exactly("gpu"), name=name, namespace=namespace)
    del body["metadata"]["uid"]  # the API server's
    created = kube.create(resources.RESOURCECLAIMS, body)
    status = allocation(node, [device], request="gpu", driver=driver, pool=pool)
    kube.patch_status(
        resources.RESOURCECLAIMS, name, {"status": {"allocation": status}}, namespace=namespace
    )
    return namespace, name, created["metadata"]["uid"]


def bound(kube: KubeClient, namespace: str, name: str) -> str | None:
    """The node the pod is bound to, or None."""
    node: str | None = kube.get(resources.PODS, name, namespace=namespace)["spec"].get("nodeName")
    return node


def node_slices(kube: KubeClient, node: str, driver: str | None = None) -> list[dict[str, Any]]:
    """The node's ResourceSlices (only ``driver``'s, if given)."""
    selector = f"spec.nodeName={node}" + (f",spec.driver={driver}" if driver else "")
    return kube.list(resources.RESOURCESLICES, field_selector=selector).items


def gone(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> bool:
    """Whether the object no longer exists (deleted and, with finalizers, finalized)."""
    try:
        kube.get(res, name, namespace=namespace)
    except NotFound:
        return True
    return False
