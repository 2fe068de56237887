"""The controller's writes: claims' allocations (written, and released), and its own
scheduling gate (removed).  Every write is conditional on the object being as read (its
resourceVersion, or a JSON-patch test) and taken into the watch cache at once, so the next
pass does not decide from the old object.  The reconciler fences each batch of them (no
write once this replica may no longer lead) before it calls in here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gpudra.api.claim import AllocationResult
from gpudra.api.meta import name_of, namespace_of, namespaced_name, resource_version_of, uid_of
from gpudra.api.pod import pod_gate_names
from gpudra.controller.cache import ClusterCache
from gpudra.controller.decide import ClaimKey
from gpudra.controller.groups import GATE
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import Conflict, Invalid, NotFound
from gpudra.kube.objects import PatchType
from gpudra.kube.resources import PODS, RESOURCECLAIMS, Resource

log = logging.getLogger(__name__)


class Writes:
    def __init__(self, client: KubeClient, *, cache: ClusterCache | None) -> None:
        self._client = client
        self._cache = cache

    def _wrote(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        if self._cache is not None:
            self._cache.observe(resource, obj)
        return obj

    def allocate(
        self,
        allocations: Mapping[ClaimKey, AllocationResult],
        claims: Mapping[ClaimKey, dict[str, Any]],
    ) -> None:
        """Write each claim's allocation, conditional on the claim being as read (its
        allocation is decided from that snapshot); on a conflict the ones written are
        released again and the error is raised."""
        written: list[dict[str, Any]] = []
        try:
            for (ns, name), allocation in allocations.items():
                rv = resource_version_of(claims.get((ns, name)) or {})
                patch: dict[str, Any] = {"status": {"allocation": allocation}}
                if rv:
                    patch["metadata"] = {"resourceVersion": rv}
                written.append(
                    self._wrote(
                        RESOURCECLAIMS,
                        self._client.patch_status(RESOURCECLAIMS, name, patch, namespace=ns),
                    )
                )
        except (Conflict, Invalid, NotFound):
            self.release(written)
            raise

    def release(self, claims: list[dict[str, Any]]) -> None:
        """Deallocate claims, each only if it is still exactly as read (its resourceVersion):
        an allocation written meanwhile (by another replica that leads now) is never
        cleared on the strength of an older snapshot."""
        for c in claims:
            ns, name = namespaced_name(c)
            patch: dict[str, Any] = {"status": {"allocation": None}}
            if resource_version_of(c):
                patch["metadata"] = {"resourceVersion": resource_version_of(c)}
            try:
                self._wrote(
                    RESOURCECLAIMS,
                    self._client.patch_status(RESOURCECLAIMS, name, patch, namespace=ns),
                )
            except NotFound:
                pass
            except Conflict:
                log.info("claim %s/%s changed since it was read; not releasing it", ns, name)

    def remove_gate(self, pod: dict[str, Any]) -> None:
        """Remove only our gate: a JSON patch that tests the entry is ours at that index (any
        other gate added or removed meanwhile fails the test), re-read and retried once."""
        name, ns, uid = name_of(pod), namespace_of(pod), uid_of(pod)
        for attempt in range(2):
            gates = pod_gate_names(pod)
            index = gates.index(GATE) if GATE in gates else None
            if index is None:
                return
            try:
                done = self._client.patch(
                    PODS,
                    name,
                    [
                        {"op": "test", "path": "/metadata/uid", "value": uid},
                        {
                            "op": "test",
                            "path": f"/spec/schedulingGates/{index}/name",
                            "value": GATE,
                        },
                        {"op": "remove", "path": f"/spec/schedulingGates/{index}"},
                    ],
                    namespace=ns,
                    patch_type=PatchType.JSON,
                )
                self._wrote(PODS, done)
                return
            except Invalid:
                if attempt:
                    raise
                pod = self._client.get(PODS, name, namespace=ns)
                if uid_of(pod) != uid:
                    return
