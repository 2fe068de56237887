"""The recording fake's own contract, so shell tests can trust what it records and returns."""

from __future__ import annotations

import pytest

from gpudra.kube.errors import AlreadyExists, Conflict, Invalid, NotFound
from gpudra.kube.objects import PatchType, WatchEvent
from gpudra.kube.resources import EVENTS, PODS, RESOURCESLICES
from tests.fakes.kube import FakeKubeClient


def pod(name: str, node: str = "") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": name}},
        "spec": {"nodeName": node, "schedulingGates": [{"name": "a"}, {"name": "b"}]},
    }


def test_reads_return_copies_of_what_was_seeded() -> None:
    fake = FakeKubeClient()
    fake.seed(PODS, pod("p"))

    got = fake.get(PODS, "p", namespace="ns")
    got["spec"]["nodeName"] = "changed"

    assert fake.stored(PODS, "p", "ns")["spec"]["nodeName"] == ""
    assert got["metadata"]["resourceVersion"] == "1"
    with pytest.raises(NotFound):
        fake.get(PODS, "absent", namespace="ns")
    assert [str(a) for a in fake.actions] == ["get pods ns/p", "get pods ns/absent -> NotFound"]
    assert fake.writes == []


def test_list_filters_by_namespace_and_equality_selectors() -> None:
    fake = FakeKubeClient()
    fake.seed(PODS, pod("a", node="n1"), pod("b", node="n2"))

    assert [p["metadata"]["name"] for p in fake.list(PODS).items] == ["a", "b"]
    by_field = fake.list(PODS, field_selector="spec.nodeName=n2").items
    assert [p["metadata"]["name"] for p in by_field] == ["b"]
    by_label = fake.list(PODS, label_selector="app!=b").items
    assert [p["metadata"]["name"] for p in by_label] == ["a"]
    assert fake.list(PODS, namespace="other").items == []


def test_a_scripted_error_fires_once_on_the_matching_call_and_is_recorded() -> None:
    fake = FakeKubeClient()
    fake.seed(PODS, pod("p"))
    fake.fail_next("patch", PODS, Conflict("stale"), subresource="status")

    fake.patch(PODS, "p", {"metadata": {"labels": {"x": "1"}}}, namespace="ns")  # no match
    with pytest.raises(Conflict):
        fake.patch_status(PODS, "p", {"status": {"phase": "Running"}}, namespace="ns")
    fake.patch_status(PODS, "p", {"status": {"phase": "Running"}}, namespace="ns")

    assert [str(w) for w in fake.writes] == [
        "patch pods ns/p",
        "patch pods/status ns/p -> Conflict",
        "patch pods/status ns/p",
    ]
    stored = fake.stored(PODS, "p", "ns")
    assert stored["status"] == {"phase": "Running"}
    assert stored["metadata"]["labels"] == {"app": "p", "x": "1"}


def test_writes_store_what_they_say_and_bump_the_resource_version() -> None:
    fake = FakeKubeClient()
    created = fake.create(EVENTS, {"metadata": {"generateName": "p.", "namespace": "ns"}})
    assert created["metadata"]["name"].startswith("p.")
    with pytest.raises(AlreadyExists):
        fake.create(EVENTS, created)

    fake.seed(PODS, pod("p"))
    before = fake.stored(PODS, "p", "ns")["metadata"]["resourceVersion"]
    fake.patch(
        PODS,
        "p",
        [
            {"op": "test", "path": "/spec/schedulingGates/1/name", "value": "b"},
            {"op": "remove", "path": "/spec/schedulingGates/1"},
        ],
        namespace="ns",
        patch_type=PatchType.JSON,
    )
    after = fake.stored(PODS, "p", "ns")
    assert after["spec"]["schedulingGates"] == [{"name": "a"}]
    assert int(after["metadata"]["resourceVersion"]) > int(before)

    failing_test = [{"op": "test", "path": "/spec/schedulingGates/0/name", "value": "zzz"}]
    with pytest.raises(Invalid):
        fake.patch(PODS, "p", failing_test, namespace="ns", patch_type=PatchType.JSON)

    fake.delete(PODS, "p", namespace="ns", uid="u1")
    assert fake.writes[-1].body["preconditions"] == {"uid": "u1"}
    with pytest.raises(KeyError):
        fake.stored(PODS, "p", "ns")


def test_watch_yields_what_was_queued_then_ends() -> None:
    fake = FakeKubeClient(watch_idle_s=0)
    event = WatchEvent("ADDED", {"metadata": {"name": "s"}})
    fake.queue_watch(RESOURCESLICES, event)

    assert list(fake.watch(RESOURCESLICES)) == [event]
    assert list(fake.watch(RESOURCESLICES)) == []
