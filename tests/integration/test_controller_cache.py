"""The controller reads a watch-fed cache: one LIST per resource, then watches; an idle
cluster costs no LISTs, and a change wakes the controller at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.kube import KubeClient, resources
from gpudra.kube.informer import Informer
from gpudra_testkit.builders import gpu_claim, pod
from gpudra_testkit.harness.apimetrics import served
from gpudra_testkit.harness.objects import bound, publish
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration
ALL = frozenset(range(8))
WATCHED = ("pods", "resourceclaims", "nodes", "resourceslices", "deviceclasses")


def lists(kube: KubeClient) -> int:
    """Cluster-wide LIST requests the API server has served for the resources the controller
    reads (the namespace controller, deleting earlier tests' namespaces, lists per namespace)."""
    return served(kube, ["LIST"], WATCHED, scope="cluster")["LIST"]


def test_an_idle_controller_lists_nothing_and_a_gated_pod_is_served(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    n = make_node("idle")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    controller()
    kube.create(resources.RESOURCECLAIMS, gpu_claim("first", namespace, 1))
    kube.create(resources.PODS, pod("first", namespace, "first", gated=True))
    assert wait_for("first pod bound", lambda: bound(kube, namespace, "first"), 60) == n
    before = lists(kube)
    t0 = time.monotonic()
    wait_for("5 idle seconds", lambda: time.monotonic() - t0 > 5, 10)
    idle = lists(kube) - before
    # the polling controller listed 5 resources every 0.3 s pass: ~80 LISTs here
    assert idle <= 2, f"{idle} LISTs in 5 idle seconds"
    kube.create(resources.RESOURCECLAIMS, gpu_claim("second", namespace, 1))
    kube.create(resources.PODS, pod("second", namespace, "second", gated=True))
    assert wait_for("second pod bound", lambda: bound(kube, namespace, "second"), 60) == n


def test_an_informer_resumes_its_watch_without_listing_again(
    kube: KubeClient, namespace: str
) -> None:
    changes = threading.Event()
    inf = Informer(kube, resources.SERVICEACCOUNTS, on_change=changes.set, watch_timeout_s=1)
    stop = threading.Event()
    threading.Thread(target=inf.run, args=(stop,), daemon=True).start()
    try:
        assert inf.synced.wait(30)
        wait_for("three watches ended by the server", lambda: inf.watches >= 3, 30)
        kube.create(
            resources.SERVICEACCOUNTS, {"metadata": {"name": "late", "namespace": namespace}}
        )
        wait_for("the late object", lambda: inf.get((namespace, "late")) is not None, 30)
        assert inf.lists == 1
        kube.delete(resources.SERVICEACCOUNTS, "late", namespace=namespace)
        wait_for("the deletion", lambda: inf.get((namespace, "late")) is None, 30)
    finally:
        stop.set()
