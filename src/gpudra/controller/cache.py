"""The controller's watch-fed view of the cluster: pods (slim), claims, nodes, slices and
classes, each an ``Informer``.  A pass reads these instead of listing the API server, and
any change wakes the loop at once (``changed``), so a gated pod is decided within
milliseconds of appearing rather than on the next tick, and an idle cluster costs no LISTs.
"""

from __future__ import annotations

import threading

from gpudra.api.meta import RawObject, metadata
from gpudra.common.threads import Threads
from gpudra.controller.slim import slim_node, slim_pod
from gpudra.kube.client import KubeClient
from gpudra.kube.informer import Informer, compact
from gpudra.kube.resources import (
    DEVICECLASSES,
    NODES,
    PODS,
    RESOURCECLAIMS,
    RESOURCESLICES,
    Resource,
)


class ClusterCache:
    def __init__(self, client: KubeClient) -> None:
        self.changed = threading.Event()
        wake = self.changed.set
        self.pods = Informer(client, PODS, transform=lambda p: compact(slim_pod(p)), on_change=wake)
        self.claims = Informer(client, RESOURCECLAIMS, transform=compact, on_change=wake)
        self.nodes = Informer(
            client, NODES, transform=lambda n: compact(slim_node(n)), on_change=wake
        )
        self.slices = Informer(client, RESOURCESLICES, transform=compact, on_change=wake)
        self.classes = Informer(client, DEVICECLASSES, transform=compact, on_change=wake)
        self._all = (self.pods, self.claims, self.nodes, self.slices, self.classes)
        self._by_resource = {i.resource: i for i in self._all}

    def start(self, threads: Threads) -> None:
        """One guarded thread per informer (``gpudra.common.threads``): one that dies is
        logged and fails the controller's /healthz."""
        for informer in self._all:
            threads.spawn(f"watch-{informer.resource.plural}", informer.run, threads.stop)

    def wait_synced(self, timeout_s: float) -> bool:
        return all(i.synced.wait(timeout_s) for i in self._all)

    def observe(self, resource: Resource, obj: RawObject) -> None:
        """Our own write's result, so the next pass does not decide from the old object."""
        informer = self._by_resource.get(resource)
        if informer is not None and metadata(obj):
            informer.observe(obj)

    def requests(self) -> dict[str, int]:
        """LISTs and WATCHes started so far, all resources together."""
        return {
            "lists": sum(i.lists for i in self._all),
            "watches": sum(i.watches for i in self._all),
        }
