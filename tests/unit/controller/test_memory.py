"""What the controller keeps between passes: only live pods' memos, keyed by UID, and only the
pod fields it reads."""

from __future__ import annotations

import json
from typing import Any

from gpudra.controller.groups import group_pods
from gpudra.controller.reconciler import Reconciler
from gpudra.controller.slim import slim_pod
from gpudra.kube.objects import ObjectList
from gpudra.kube.resources import EVENTS, NODES, PODS
from gpudra.metrics.controller import ControllerMetrics
from tests.unit.controller.scenarios import claim, pod, run


class FakeApi:
    """gpudra's API client as the reconciler uses it: lists, event creates, status patches."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.extra: list[dict[str, Any]] = []  # nodes
        self.events: list[dict[str, Any]] = []

    def list(self, res: Any, **kw: Any) -> ObjectList:
        if res is PODS:
            return ObjectList(list(self.pods), "1")
        return ObjectList(list(self.extra) if res is NODES else [], "1")

    def create(self, res: Any, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if res is EVENTS:
            self.events.append(obj)
        return obj

    def patch_status(self, *a: Any, **kw: Any) -> dict[str, Any]:
        return {}

    def server_version(self) -> tuple[int, int]:
        return (1, 37)


def claimless(name: str, uid: str) -> dict[str, Any]:
    p = pod(name)
    p["spec"].pop("resourceClaims")
    p["metadata"]["uid"] = uid
    return p


def test_memos_follow_the_live_pods_by_uid() -> None:
    api = FakeApi()
    r = Reconciler(api, metrics=ControllerMetrics())  # type: ignore[arg-type]
    api.pods = [claimless(f"p{i}", f"uid-{i}") for i in range(50)]
    r.run_pass()
    assert len(api.events) == 50 and len(r.teller.said) == 50
    r.run_pass()
    assert len(api.events) == 50  # told once
    api.pods = [claimless("p0", "uid-new")]  # the rest deleted, p0 recreated under its name
    r.run_pass()
    assert set(r.teller.said) == {"uid-new"}, "memos of deleted pods are kept"
    assert len(api.events) == 51, "the recreated pod got no event"


def full_pod() -> dict[str, Any]:
    p = pod("p", "c", tolerations=[{"key": "k", "operator": "Exists"}], nodeSelector={"a": "b"})
    p["metadata"] |= {
        "managedFields": [{"manager": "kubectl", "fieldsV1": {f"f:{i}": {} for i in range(400)}}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 8000},
    }
    c = p["spec"]["containers"][0]
    c |= {
        "env": [{"name": f"E{i}", "value": "v" * 100} for i in range(100)],
        "volumeMounts": [{"name": f"v{i}", "mountPath": f"/m/{i}"} for i in range(50)],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
    }
    p["spec"]["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(50)]
    p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled"}] * 10}
    return p


def test_a_slim_pod_is_a_fraction_of_the_size_and_decides_the_same() -> None:
    full = full_pod()
    slim = slim_pod(full)
    assert len(json.dumps(slim)) * 20 < len(json.dumps(full))
    assert [g.key for g in group_pods([slim])] == [g.key for g in group_pods([full])]
    (a,) = run([full], [claim("c")])
    (b,) = run([slim], [claim("c")])
    assert (a.outcome, a.allocations, a.nodes) == (b.outcome, b.allocations, b.nodes)


def test_a_group_is_decided_again_only_when_its_inputs_change() -> None:
    api = FakeApi()
    r = Reconciler(api, metrics=ControllerMetrics())  # type: ignore[arg-type]
    api.pods = [claimless(f"p{i}", f"uid-{i}") for i in range(3)]
    for p in api.pods:
        p["metadata"]["resourceVersion"] = "1"
    assert r.run_pass() == {"fail": 3}
    assert r.run_pass() == {"unchanged": 3}
    api.pods[0]["metadata"]["resourceVersion"] = "2"  # the pod changed
    assert r.run_pass() == {"fail": 1, "unchanged": 2}
    node = {"metadata": {"name": "n", "uid": "n", "labels": {}}, "spec": {}, "status": {}}
    api.extra = [node]  # the world changed: a node appeared
    assert r.run_pass() == {"fail": 3}
