"""``Pod``: the fields gpudra reads (claims, gates, what node fit needs, phase, node).

The controller keeps only these fields of a listed pod (``controller.slim``), so this module
is also the list of what a slimmed pod still has.
"""

from __future__ import annotations

from typing import Any, TypedDict

from gpudra.api.meta import Object, ObjectMeta
from gpudra.api.taints import TolerationBody

FINISHED_PHASES = ("Succeeded", "Failed")


class PodResourceClaim(TypedDict, total=False):
    name: str
    resourceClaimName: str
    resourceClaimTemplateName: str


class PodResourceClaimStatus(TypedDict, total=False):
    name: str
    resourceClaimName: str  # the generated claim's name; absent until it exists


class SchedulingGate(TypedDict, total=False):
    name: str


class ResourceRequirements(TypedDict, total=False):
    requests: dict[str, str]


class Container(TypedDict, total=False):
    name: str
    resources: ResourceRequirements


class PodSpec(TypedDict, total=False):
    nodeName: str
    schedulingGates: list[SchedulingGate]
    resourceClaims: list[PodResourceClaim]
    nodeSelector: dict[str, str]
    tolerations: list[TolerationBody]
    affinity: dict[str, Any]
    containers: list[Container]
    initContainers: list[Container]


class PodStatus(TypedDict, total=False):
    phase: str
    resourceClaimStatuses: list[PodResourceClaimStatus]


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


def pod_spec(pod: Object) -> PodSpec:
    spec: PodSpec = pod.get("spec") or {}
    return spec


def pod_status(pod: Object) -> PodStatus:
    status: PodStatus = pod.get("status") or {}
    return status


def pod_node_name(pod: Object) -> str:
    """The node the pod is bound to; ``""`` while it is not scheduled."""
    return str(pod_spec(pod).get("nodeName") or "")


def pod_phase(pod: Object) -> str:
    return str(pod_status(pod).get("phase") or "")


def pod_is_finished(pod: Object) -> bool:
    """Succeeded or Failed: it holds no node resources and is no member of anything."""
    return pod_phase(pod) in FINISHED_PHASES


def pod_gate_names(pod: Object) -> list[str]:
    """The names in ``spec.schedulingGates``, in order."""
    return [str(g.get("name") or "") for g in pod_spec(pod).get("schedulingGates") or []]


def pod_claim_refs(pod: Object) -> list[PodResourceClaim]:
    """``spec.resourceClaims``: a claim by name, or a template whose claim is generated."""
    return pod_spec(pod).get("resourceClaims") or []


def pod_generated_claims(pod: Object) -> dict[str, str]:
    """Pod claim entry name -> the name of the claim generated for it (those that exist)."""
    statuses = pod_status(pod).get("resourceClaimStatuses") or []
    return {
        str(s.get("name")): str(s["resourceClaimName"])
        for s in statuses
        if s.get("resourceClaimName")
    }


def pod_tolerations(pod: Object) -> list[TolerationBody]:
    return pod_spec(pod).get("tolerations") or []


def pod_node_selector(pod: Object) -> dict[str, str]:
    return pod_spec(pod).get("nodeSelector") or {}


def pod_node_affinity(pod: Object) -> dict[str, Any] | None:
    """``spec.affinity.nodeAffinity`` (None when unset)."""
    affinity: dict[str, Any] | None = (pod_spec(pod).get("affinity") or {}).get("nodeAffinity")
    return affinity or None


def pod_required_node_selector(pod: Object) -> dict[str, Any] | None:
    """The NodeSelector of required node affinity (None when the pod has none)."""
    required: dict[str, Any] | None = (pod_node_affinity(pod) or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    return required or None


def pod_containers(pod: Object) -> list[Container]:
    return pod_spec(pod).get("containers") or []


def pod_init_containers(pod: Object) -> list[Container]:
    return pod_spec(pod).get("initContainers") or []


def container_requests(container: Container) -> dict[str, str]:
    """``resources.requests``: resource name -> quantity text."""
    return (container.get("resources") or {}).get("requests") or {}
