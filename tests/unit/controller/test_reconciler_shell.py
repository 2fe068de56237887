"""The reconciler's writes, against a recording fake of gpudra's `KubeClient`.

What each pass decides is `test_decide`'s subject; here the question is what a pass *writes*
for a given cluster state, in which order, with which preconditions, and what it does not write
when a write fails or leadership is gone.  The tests drive only ``run_pass()`` and
``may_write`` and read only the fake's recorded writes, so they survive refactors of the
decision types behind them.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.controller.reconciler import NotLeader, Reconciler
from gpudra.kube.errors import Conflict, Forbidden
from gpudra.kube.objects import PatchType
from gpudra.kube.resources import (
    DEVICECLASSES,
    EVENTS,
    NODES,
    PODS,
    RESOURCECLAIMS,
    RESOURCESLICES,
)
from gpudra.metrics.controller import ControllerMetrics
from gpudra.resourceapi import MANAGED_TAINT
from gpudra_testkit.builders import (
    GATE,
    counted_claim,
    device_class,
    gated_pod,
    schedulable_node,
)
from tests.fakes.kube import Action, FakeKubeClient

DRIVER = "gpu.gpudra.io"
NOW = 1_000_000.0


# --- the cluster, as plain objects -------------------------------------------------------------


def pod(
    name: str,
    *claims: str,
    gates: tuple[str, ...] = (GATE,),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return gated_pod(name, *claims, gates=gates, labels=labels, resource_version="10")


def claim(name: str, count: int = 1, cls: str = "gpu.gpudra.io") -> dict[str, Any]:
    return counted_claim(name, count, cls, resource_version="5")


def node(name: str = "n1") -> dict[str, Any]:
    return schedulable_node(name)


def gpu_slice(node_name: str = "n1", gpus: int = 2) -> dict[str, Any]:
    """One node's pool: ``gpus`` whole GPUs, all controller-managed (tainted for the
    scheduler, so only the controller allocates them)."""
    devices = [
        {
            "name": f"gpu-{i}",
            "attributes": {"type": {"string": "gpu"}, "index": {"int": i}},
            "taints": [MANAGED_TAINT],
        }
        for i in range(gpus)
    ]
    return {
        "metadata": {"name": f"{node_name}-{DRIVER}-0", "uid": f"s-{node_name}"},
        "spec": {
            "driver": DRIVER,
            "nodeName": node_name,
            "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def cluster(*objects: tuple[Any, dict[str, Any]], gpus: int = 2) -> FakeKubeClient:
    """A fake API holding one node with ``gpus`` managed GPUs, the GPU class, and ``objects``."""
    fake = FakeKubeClient()
    fake.seed(NODES, node())
    fake.seed(RESOURCESLICES, gpu_slice(gpus=gpus))
    fake.seed(DEVICECLASSES, device_class())
    for res, obj in objects:
        fake.seed(res, obj)
    return fake


def reconciler(fake: FakeKubeClient) -> Reconciler:
    return Reconciler(fake, metrics=ControllerMetrics(), clock=lambda: NOW, driver=DRIVER)


def summary(writes: list[Action]) -> list[str]:
    return [str(w) for w in writes]


def events(writes: list[Action]) -> list[dict[str, Any]]:
    return [w.body for w in writes if w.verb == "create" and w.resource == EVENTS]


# --- allocate, then ungate -----------------------------------------------------------------------


def test_a_placeable_pod_gets_its_claim_allocated_then_its_gate_removed() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c")))
    reconciler(fake).run_pass()

    assert summary(fake.writes) == [
        "patch resourceclaims/status ns/c",
        "patch pods ns/p",
        "create events ns/p.",
        "patch pods/status ns/p",
    ]
    allocate, ungate, event, condition = fake.writes
    # the allocation is conditional on the claim being as it was read
    assert allocate.patch_type is PatchType.MERGE
    assert allocate.body["metadata"] == {"resourceVersion": "5"}
    (result,) = allocate.body["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["request"]) == (DRIVER, "n1", "g")
    assert result["device"] in ("gpu-0", "gpu-1")
    assert result["tolerations"][0]["key"] == MANAGED_TAINT["key"]
    # the gate goes only if the pod is still this pod and the gate still where it was seen
    assert ungate.patch_type is PatchType.JSON
    assert ungate.body == [
        {"op": "test", "path": "/metadata/uid", "value": "u-p"},
        {"op": "test", "path": "/spec/schedulingGates/0/name", "value": GATE},
        {"op": "remove", "path": "/spec/schedulingGates/0"},
    ]
    assert (event.body["type"], event.body["reason"]) == ("Normal", "Allocated")
    assert event.body["involvedObject"]["uid"] == "u-p"
    assert "on node n1" in event.body["message"]
    assert condition.patch_type is PatchType.STRATEGIC
    (cond,) = condition.body["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "gpudra.io/Placement",
        "True",
        "Allocated",
    )


def test_only_our_gate_is_removed_at_the_index_it_has() -> None:
    fake = cluster(
        (PODS, pod("p", "c", gates=("other.io/gate", GATE))), (RESOURCECLAIMS, claim("c"))
    )
    reconciler(fake).run_pass()

    (ungate,) = [w for w in fake.writes if w.resource == PODS and not w.subresource]
    assert ungate.body[1:] == [
        {"op": "test", "path": "/spec/schedulingGates/1/name", "value": GATE},
        {"op": "remove", "path": "/spec/schedulingGates/1"},
    ]
    assert fake.stored(PODS, "p", "ns")["spec"]["schedulingGates"] == [{"name": "other.io/gate"}]


def test_a_second_pass_over_the_converged_state_writes_nothing() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c")))
    r = reconciler(fake)
    r.run_pass()
    fake.actions.clear()

    r.run_pass()

    assert fake.writes == []


def test_an_allocated_claim_of_a_still_gated_pod_is_only_ungated() -> None:
    """A pass that wrote the allocation and stopped before the gate (a crash, a lost lease):
    the next one removes the gate and writes no second allocation."""
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c")))
    fake.fail_next("patch", PODS, Conflict("stopped here"), subresource="")
    reconciler(fake).run_pass()  # the failed gate write stands in for the crash
    assert summary(fake.writes)[:2] == [
        "patch resourceclaims/status ns/c",
        "patch pods ns/p -> Conflict",
    ]
    fake.actions.clear()

    reconciler(fake).run_pass()  # a new replica: nothing remembered

    assert summary(fake.writes)[0] == "patch pods ns/p"
    assert not [w for w in fake.writes if w.resource == RESOURCECLAIMS]


# --- failed writes -------------------------------------------------------------------------------


def test_a_conflict_on_the_allocation_leaves_the_gate_and_is_retried_next_pass() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c")))
    fake.fail_next("patch", RESOURCECLAIMS, Conflict("stale resourceVersion"), subresource="status")
    r = reconciler(fake)

    r.run_pass()

    assert summary(fake.writes) == [
        "patch resourceclaims/status ns/c -> Conflict",
        "create events ns/p.",
        "patch pods/status ns/p",
    ]
    (event,) = events(fake.writes)
    assert (event["type"], event["reason"]) == ("Warning", "AllocationConflict")
    assert "stale resourceVersion" in event["message"]
    fake.actions.clear()

    r.run_pass()

    assert summary(fake.writes)[:2] == ["patch resourceclaims/status ns/c", "patch pods ns/p"]


def test_a_conflict_on_a_gang_member_releases_the_claims_already_written() -> None:
    gang = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "2"}
    fake = cluster(
        (PODS, pod("a", "ca", labels=gang)),
        (PODS, pod("b", "cb", labels=gang)),
        (RESOURCECLAIMS, claim("ca")),
        (RESOURCECLAIMS, claim("cb")),
    )
    fake.fail_next("patch", RESOURCECLAIMS, Conflict("changed"), name="cb")

    reconciler(fake).run_pass()

    claim_writes = [w for w in fake.writes if w.resource == RESOURCECLAIMS]
    assert summary(claim_writes) == [
        "patch resourceclaims/status ns/ca",
        "patch resourceclaims/status ns/cb -> Conflict",
        "patch resourceclaims/status ns/ca",
    ]
    release = claim_writes[2].body
    assert release["status"] == {"allocation": None}
    # released only if still exactly what this pass wrote (the release bumped it once more)
    written_rv = fake.stored(RESOURCECLAIMS, "ca", "ns")["metadata"]["resourceVersion"]
    assert release["metadata"]["resourceVersion"] == str(int(written_rv) - 1)
    assert not [w for w in fake.writes if w.resource == PODS and not w.subresource]


def test_an_api_error_in_one_group_does_not_stop_the_others() -> None:
    fake = cluster(
        (PODS, pod("a", "ca")),
        (PODS, pod("b", "cb")),
        (RESOURCECLAIMS, claim("ca")),
        (RESOURCECLAIMS, claim("cb")),
    )
    fake.fail_next("patch", RESOURCECLAIMS, Forbidden("webhook says no"), name="ca")

    reconciler(fake).run_pass()

    gate_writes = [w for w in fake.writes if w.resource == PODS and not w.subresource]
    assert summary(gate_writes) == ["patch pods ns/b"]


# --- leadership ----------------------------------------------------------------------------------


def test_a_replica_that_may_not_write_writes_nothing() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c")))
    r = reconciler(fake)
    r.may_write = lambda: False

    with pytest.raises(NotLeader):
        r.run_pass()

    assert fake.writes == []


def test_a_replica_that_may_not_write_tells_no_one_either() -> None:
    """Events and pod conditions are writes too: an unplaceable claim seen by a replica that
    does not lead used to get both."""
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c", count=4)), gpus=2)
    r = reconciler(fake)
    r.may_write = lambda: False

    with pytest.raises(NotLeader):
        r.run_pass()

    assert fake.writes == []


def test_leadership_lost_mid_pass_stops_before_the_next_group() -> None:
    fake = cluster(
        (PODS, pod("a", "ca")),
        (PODS, pod("b", "cb")),
        (RESOURCECLAIMS, claim("ca")),
        (RESOURCECLAIMS, claim("cb")),
    )
    r = reconciler(fake)
    answers = iter([True])
    r.may_write = lambda: next(answers, False)  # leads for the first write batch only

    with pytest.raises(NotLeader):
        r.run_pass()

    claim_writes = [w for w in fake.writes if w.resource == RESOURCECLAIMS]
    assert len(claim_writes) == 1


# --- telling the user ----------------------------------------------------------------------------


def test_an_unplaceable_claim_gets_a_warning_event_and_no_allocation() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c", count=4)), gpus=2)

    reconciler(fake).run_pass()

    assert summary(fake.writes) == ["create events ns/p.", "patch pods/status ns/p"]
    (event,) = events(fake.writes)
    assert (event["type"], event["reason"]) == ("Warning", "Unplaceable")
    assert event["involvedObject"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": "p",
        "namespace": "ns",
        "uid": "u-p",
    }
    assert event["message"]
    (cond,) = fake.writes[1].body["status"]["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "Unplaceable")


def test_event_and_condition_messages_are_cut_to_the_api_limit() -> None:
    # a class name far over the API's own limit, quoted in the failure message: the simplest
    # way to make a message over the 1024 characters an Event may carry
    long_class = "x" * 2000
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c", cls=long_class)))

    reconciler(fake).run_pass()

    (event,) = events(fake.writes)
    assert event["reason"] == "Unplaceable"
    assert len(event["message"]) == 1024
    assert "device class 'xxx" in event["message"]
    (cond,) = fake.writes[1].body["status"]["conditions"]
    assert cond["message"] == event["message"]


def test_the_same_outcome_is_told_once() -> None:
    fake = cluster((PODS, pod("p", "c")), (RESOURCECLAIMS, claim("c", count=4)), gpus=2)
    r = reconciler(fake)
    r.run_pass()
    fake.actions.clear()

    r.run_pass()

    assert fake.writes == []


def test_an_unused_claim_this_controller_allocated_is_released() -> None:
    """A gated pod deleted after its claim was allocated: the devices would stay taken."""
    orphan = claim("c")
    orphan["status"] = {
        "allocation": {
            "devices": {
                "results": [
                    {
                        "request": "g",
                        "driver": DRIVER,
                        "pool": "n1",
                        "device": "gpu-0",
                        "tolerations": [{"key": MANAGED_TAINT["key"], "operator": "Exists"}],
                    }
                ]
            }
        }
    }
    fake = cluster((RESOURCECLAIMS, orphan))

    reconciler(fake).run_pass()

    (release,) = fake.writes
    assert str(release) == "patch resourceclaims/status ns/c"
    assert release.body == {"status": {"allocation": None}, "metadata": {"resourceVersion": "5"}}
