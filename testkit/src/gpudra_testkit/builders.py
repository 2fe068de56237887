"""ResourceClaims, pods, ResourceSlices, DeviceClasses and nodes as plain dicts, for every test
tier and the benchmarks: one place that knows what these objects look like.

Each builder returns a fresh JSON-shaped dict (what the API server serves and what gpudra's
pure functions take), so a test can pass it to the allocator as data or create it on a real
control plane unchanged; a test that needs an odd shape edits the dict it got back.  Defaults
are what most tests want: driver and class ``gpu.gpudra.io``, namespace ``ns``, one claim
reference named ``g`` per pod.  Nothing here does IO (that is `gpudra_testkit.harness.objects`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from gpudra.catalogue.attributes import NVLINK_GROUP
from gpudra.catalogue.catalogue import build_catalogue
from gpudra.kubetypes.nodeselect import node_name_selector
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceslices.builder import desired_slices

DRIVER = "gpu.gpudra.io"
GPU_CLASS = "gpu.gpudra.io"
MIG_CLASS = "mig.gpudra.io"
GATE = "gpudra.io/topology"  # the controller's scheduling gate

Obj = dict[str, Any]


def unique(prefix: str) -> str:
    """A DNS-label-safe name that no other test (or earlier run) uses."""
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40]
    return f"{base}-{uuid.uuid4().hex[:6]}"


# -- requests and constraints ------------------------------------------------------------------


def cel(*expressions: str) -> list[Obj]:
    """Selectors, one CEL expression each."""
    return [{"cel": {"expression": e}} for e in expressions]


def exactly(name: str, count: int = 1, cls: str = GPU_CLASS, **kw: Any) -> Obj:
    """An ``exactly`` request for ``count`` devices of class ``cls`` (``kw``: more fields, e.g.
    ``selectors=cel(...)``, ``allocationMode="All"``)."""
    return {"name": name, "exactly": {"deviceClassName": cls, "count": count, **kw}}


def mig_profiles(*profiles: str) -> list[Obj]:
    """Selectors for MIG devices of the given profiles."""
    a = f"device.attributes['{DRIVER}']"
    return cel(f"{a}.type == 'mig' && {a}.profile in {list(profiles)!r}")


def mig(name: str, count: int, *profiles: str) -> Obj:
    """A request for ``count`` MIG devices of the given profiles."""
    return exactly(name, count, cls=MIG_CLASS, selectors=mig_profiles(*profiles))


def nvlink(*requests: str) -> Obj:
    """A constraint: the requests' devices share one NVLink group."""
    return same(NVLINK_GROUP, *requests)


def same(attribute: str, *requests: str) -> Obj:
    return {"requests": list(requests), "matchAttribute": f"{DRIVER}/{attribute}"}


def distinct(attribute: str, *requests: str) -> Obj:
    return {"requests": list(requests), "distinctAttribute": f"{DRIVER}/{attribute}"}


# -- claims --------------------------------------------------------------------------------------


def claim(
    *requests: Obj,
    constraints: list[Obj] | None = None,
    name: str = "c",
    namespace: str = "ns",
) -> Obj:
    """A ResourceClaim with these requests (uid ``uid-<name>``; the API server replaces it)."""
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {"devices": {"requests": list(requests), "constraints": constraints or []}},
    }


def gpu_claim(name: str, namespace: str, count: int, selector: str | None = None) -> Obj:
    """A claim for ``count`` whole GPUs in one request named ``gpus``, optionally selected by
    one CEL expression; as a user writes it (no uid), to create on a cluster."""
    request = exactly("gpus", count)
    if selector:
        request["exactly"]["selectors"] = cel(selector)
    body = claim(request, name=name, namespace=namespace)
    del body["metadata"]["uid"]
    return body


def allocated(claim_name: str, node_name: str, *devices: str) -> Obj:
    """A claim (status only) holding these devices of ``node_name``'s pool: what the allocator
    must treat as taken."""
    return {
        "metadata": {"name": claim_name, "namespace": "ns"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "r", "driver": DRIVER, "pool": node_name, "device": d}
                        for d in devices
                    ]
                }
            }
        },
    }


# -- pods ----------------------------------------------------------------------------------------


def pod(
    name: str,
    namespace: str,
    claim_name: str = "",
    *,
    template: str = "",
    node: str | None = None,
    gated: bool = False,
    labels: dict[str, str] | None = None,
    image: str = "busybox",
) -> Obj:
    """A one-container pod using one claim (``claim_name``) or one claim made from
    ``template``, referenced as ``g``; neither: a pod without claims.  ``node`` pins it with a
    node selector (the scheduler still allocates); ``gated`` adds the controller's gate."""
    container: Obj = {"name": "c", "image": image}
    spec: Obj = {"containers": [container]}
    if claim_name or template:
        container["resources"] = {"claims": [{"name": "g"}]}
        ref = (
            ("resourceClaimName", claim_name)
            if claim_name
            else ("resourceClaimTemplateName", template)
        )
        spec["resourceClaims"] = [{"name": "g", ref[0]: ref[1]}]
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if gated:
        spec["schedulingGates"] = [{"name": GATE}]
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
    }


# -- nodes, classes, slices ------------------------------------------------------------------


def node(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels}}


def device_class(name: str = GPU_CLASS, *exprs: str) -> Obj:
    """A DeviceClass selecting with these CEL expressions (none: every device)."""
    return {"metadata": {"name": name}, "spec": {"selectors": cel(*exprs)}}


def node_owner(node_obj: Obj) -> Obj:
    """The owner reference a node daemon puts on its slices (deleted with the Node)."""
    meta = node_obj["metadata"]
    return {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}


def resource_slice(
    node_name: str,
    devices: list[Obj],
    *,
    name: str | None = None,
    driver: str = DRIVER,
    owner: Obj | None = None,
    **spec: Any,
) -> Obj:
    """A ResourceSlice of ``node_name`` with these devices, alone in its pool (named after the
    node, generation 1) unless ``pool=`` says otherwise; ``spec``: more spec fields."""
    pool = spec.pop("pool", {"name": node_name, "generation": 1, "resourceSliceCount": 1})
    meta: Obj = {"name": name or f"{node_name}-{driver}"}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": meta,
        "spec": {"driver": driver, "nodeName": node_name, "pool": pool, "devices": devices, **spec},
    }


def profile_slices(
    profile: str,
    node_name: str,
    *,
    managed: frozenset[int] = frozenset(),
    dynamic_mig: frozenset[int] = frozenset(),
    owner: Obj | None = None,
    shared: frozenset[int] = frozenset(),
    shares: int = 0,
) -> list[Obj]:
    """The slices the node daemon publishes for a mock profile (``managed``: controller-managed
    GPUs; ``dynamic_mig``: GPUs whose MIG placements are offered as partitionable devices;
    ``shared``: GPUs offered for consumable capacity, with ``shares`` claims each, 0: no
    shares capacity), on a current server."""
    inv = MockBackend(load_machine(profile), node_name=node_name).inventory()
    catalogue = build_catalogue(
        inv, managed=managed, dynamic=dynamic_mig, shared=shared, shares=shares
    )
    return desired_slices(catalogue, driver=DRIVER, owner=owner)


def mig_slices(node_name: str, profile: str = "dgx-h100-mig") -> list[Obj]:
    """The node's slices with dynamic MIG on every GPU: each GPU's placements as devices
    drawing on its memory-slice counters."""
    inv = MockBackend(load_machine(profile), node_name=node_name).inventory()
    catalogue = build_catalogue(inv, dynamic=frozenset(range(len(inv.gpus))))
    return desired_slices(catalogue, driver=DRIVER)


def counter_slice(node_name: str) -> list[Obj]:
    """The upstream backtracking benchmark shape: 8 devices, counters cpu1..cpu8 and mem=70Gi;
    device-1 consumes 20Gi, the others 10Gi each."""
    counters = {f"cpu{i}": {"value": "1"} for i in range(1, 9)} | {"mem": {"value": "70Gi"}}
    devices = [
        {
            "name": f"device-{i}",
            "attributes": {"type": {"string": "gpu"}},
            "consumesCounters": [
                {
                    "counterSet": "set",
                    "counters": {
                        f"cpu{i}": {"value": "1"},
                        "mem": {"value": "20Gi" if i == 1 else "10Gi"},
                    },
                }
            ],
        }
        for i in range(1, 9)
    ]
    return [
        {
            "spec": {
                "driver": DRIVER,
                "nodeName": node_name,
                "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
                "sharedCounters": [{"name": "set", "counters": counters}],
                "devices": devices,
            }
        }
    ]


# -- the controller's view: gated pods, claims and nodes with what fit checks ----------------


def gated_pod(
    name: str,
    *claims: str,
    gates: tuple[str, ...] = (GATE,),
    labels: dict[str, str] | None = None,
    namespace: str = "ns",
    cpu: str = "1",
    resource_version: str | None = None,
    **spec: Any,
) -> Obj:
    """A pod as the controller reads it: uid ``u-<name>``, one container requesting ``cpu``,
    one claim reference per name in ``claims`` (named after the claim), the controller's gate
    (``gates=()``: none); ``spec`` adds pod spec fields (tolerations, nodeSelector...)."""
    meta: Obj = {"name": name, "namespace": namespace, "uid": f"u-{name}", "labels": labels or {}}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    body: Obj = {
        "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        "resourceClaims": [{"name": c, "resourceClaimName": c} for c in claims],
        **spec,
    }
    if gates:
        body["schedulingGates"] = [{"name": g} for g in gates]
    return {"metadata": meta, "spec": body}


def counted_claim(
    name: str,
    count: int = 1,
    cls: str = GPU_CLASS,
    *,
    allocated: bool = False,
    namespace: str = "ns",
    resource_version: str | None = None,
) -> Obj:
    """A claim for ``count`` devices of ``cls`` in one request ``g`` (uid ``c-<name>``);
    ``allocated``: with an (empty) allocation already written."""
    c: Obj = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"c-{name}"},
        "spec": {
            "devices": {
                "requests": [{"name": "g", "exactly": {"deviceClassName": cls, "count": count}}]
            }
        },
    }
    if resource_version is not None:
        c["metadata"]["resourceVersion"] = resource_version
    if allocated:
        c["status"] = {"allocation": {"devices": {"results": []}}}
    return c


def schedulable_node(name: str = "n1", *, cpu: str = "8", **extra: Any) -> Obj:
    """A Node with a hostname label and allocatable cpu, memory (16Gi) and pods (10)."""
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": extra.pop("spec", {}),
        "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "10"}},
        **extra,
    }


# -- what a node daemon reads: claims allocated on its node ----------------------------------


def device_result(
    device: str, request: str = "gpus", *, pool: str, driver: str = DRIVER, **kw: Any
) -> Obj:
    """One allocation result (``kw``: adminAccess, shareID...)."""
    return {"request": request, "driver": driver, "pool": pool, "device": device, **kw}


def claim_on_node(
    node_name: str, *results: Obj, uid: str = "uid-1", name: str = "c", namespace: str = "ns"
) -> Obj:
    """A ResourceClaim as the API server returns it once allocated on ``node_name``: these
    results, pinned to the node by the selector kube-scheduler writes."""
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "status": {
            "allocation": {
                "devices": {"results": list(results)},
                "nodeSelector": node_name_selector(node_name),
            }
        },
    }
