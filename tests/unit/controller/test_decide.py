"""Controller decisions as data: groups, fit, and what happens to each kind of group."""

from __future__ import annotations

import pytest

from gpudra.controller.decide import NOT_MANAGED, GroupOutcome
from gpudra.controller.fit import fit_problem
from gpudra.metrics.controller import OUTCOMES
from tests.unit.controller.scenarios import TS, claim, node, pod, run, setup


def test_single_pod_gets_a_quad_with_toleration_and_timestamp() -> None:
    (d,) = run([pod("p", "c")], [claim("c", 4)])
    assert d.outcome is GroupOutcome.ALLOCATE and d.nodes == {"ns/p": "n1"}
    alloc = d.allocations[("ns", "c")]
    devices = sorted(r["device"] for r in alloc["devices"]["results"])
    assert devices in (["gpu-0", "gpu-1", "gpu-2", "gpu-3"], ["gpu-4", "gpu-5", "gpu-6", "gpu-7"])
    assert alloc["allocationTimestamp"] == TS
    assert (
        alloc["devices"]["results"][0]["tolerations"][0]["key"]
        == "gpu.gpudra.io/controller-managed"
    )


def test_only_managed_devices_are_used() -> None:
    (d,) = run([pod("p", "c")], [claim("c", 1)], setup=setup(frozenset()))
    assert d.outcome is GroupOutcome.FAIL and NOT_MANAGED in d.message


def test_ungated_pods_are_not_ours() -> None:
    assert run([pod("p", "c", gated=False)], [claim("c")]) == []


def test_gang_waits_until_complete() -> None:
    labels = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "3"}
    (d,) = run(
        [pod("a", "ca", labels=labels), pod("b", "cb", labels=labels)], [claim("ca"), claim("cb")]
    )
    assert d.outcome is GroupOutcome.WAIT and "2 of 3 pods" in d.message


def test_gang_all_or_nothing() -> None:
    labels = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "3"}
    pods = [pod(x, f"c{x}", labels=labels) for x in "abc"]
    (d,) = run(pods, [claim(f"c{x}", 4) for x in "abc"])  # 12 GPUs on one 8-GPU node
    assert d.outcome is GroupOutcome.FAIL and d.allocations == {}
    assert d.message.startswith("gang ns/gang:g: cannot allocate")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {"gpudra.io/gang": "g", "gpudra.io/gang-size": "x"},
            "must be a positive integer, got 'x'",
        ),
    ],
)
def test_bad_gang_size(labels: dict[str, str], message: str) -> None:
    (d,) = run([pod("a", "c", labels=labels)], [claim("c")])
    assert d.outcome is GroupOutcome.FAIL and message in d.message


def test_gang_size_disagreement() -> None:
    (d,) = run(
        [
            pod("a", "ca", labels={"gpudra.io/gang": "g", "gpudra.io/gang-size": "2"}),
            pod("b", "cb", labels={"gpudra.io/gang": "g", "gpudra.io/gang-size": "3"}),
        ],
        [claim("ca"), claim("cb")],
    )
    assert (
        d.outcome is GroupOutcome.FAIL
        and "disagree on gpudra.io/gang-size: ns/a=2, ns/b=3" in d.message
    )


def test_pod_without_claims_and_missing_claims() -> None:
    (d,) = run([pod("p")], [])
    assert d.outcome is GroupOutcome.FAIL and "has no resource claims" in d.message
    (d,) = run([pod("p", "absent")], [])
    assert d.outcome is GroupOutcome.WAIT and "absent" in d.message
    template = pod("t")
    template["spec"]["resourceClaims"] = [{"name": "g", "resourceClaimTemplateName": "tmpl"}]
    (d,) = run([template], [])
    assert d.outcome is GroupOutcome.WAIT and "waiting for the claims of pod ns/t" in d.message


def test_restart_states() -> None:
    (d,) = run([pod("p", "a", "b")], [claim("a", allocated=True), claim("b", allocated=True)])
    assert d.outcome is GroupOutcome.UNGATE
    (d,) = run([pod("p", "a", "b")], [claim("a", allocated=True), claim("b")])
    assert d.outcome is GroupOutcome.ROLLBACK and d.claims == [("ns", "a")]


def test_unknown_class_fails_the_pod_only() -> None:
    bad = claim("bad")
    bad["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "nope"
    d_bad, d_ok = run([pod("a", "bad"), pod("b", "ok")], [bad, claim("ok")])
    assert (
        d_bad.outcome is GroupOutcome.FAIL and "device class 'nope' does not exist" in d_bad.message
    )
    assert d_ok.outcome is GroupOutcome.ALLOCATE


FIT = {
    "node selector": (
        pod("p", nodeSelector={"zone": "a"}),
        node("n"),
        "node selector zone=a does not match",
    ),
    "taint": (
        pod("p"),
        node("n", spec={"taints": [{"key": "k", "effect": "NoSchedule"}]}),
        "untolerated node taint k:NoSchedule",
    ),
    "cpu": (
        pod("p", containers=[{"name": "c", "resources": {"requests": {"cpu": "5"}}}]),
        node("n"),
        "insufficient cpu",
    ),
    "cordoned": (pod("p"), node("n", spec={"unschedulable": True}), "node is cordoned"),
}


@pytest.mark.parametrize("case", FIT)
def test_fit(case: str) -> None:
    p, n, message = FIT[case]
    assert fit_problem(p, n, []) == message


def test_fit_counts_pods_already_on_the_node() -> None:
    busy = [
        pod(f"x{i}", containers=[{"name": "c", "resources": {"requests": {"cpu": "1"}}}])
        for i in range(4)
    ]
    assert fit_problem(pod("p"), node("n"), busy) == "insufficient cpu"
    tolerant = pod("p", tolerations=[{"key": "k", "operator": "Exists"}])
    assert (
        fit_problem(
            tolerant, node("n", spec={"taints": [{"key": "k", "effect": "NoSchedule"}]}), []
        )
        is None
    )


def test_gang_partly_ungated_by_an_interrupted_pass_is_completed() -> None:
    """All claims were written, 1 of 2 pods ungated, then the controller died."""
    labels = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "2"}
    (d,) = run(
        [pod("a", "ca", labels=labels, gated=False), pod("b", "cb", labels=labels)],
        [claim("ca", allocated=True), claim("cb", allocated=True)],
    )
    assert d.outcome is GroupOutcome.UNGATE


def test_finished_pods_of_an_earlier_run_do_not_complete_a_gang() -> None:
    """Two Succeeded/Failed pods of the gang label from an earlier run plus two new gated
    ones: a gang of 4 must wait, not place half of itself."""
    labels = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "4"}
    done = [pod(f"old{i}", f"o{i}", labels=labels, gated=False) for i in range(2)]
    for p, phase in zip(done, ("Succeeded", "Failed"), strict=True):
        p["status"] = {"phase": phase}
    new = [pod(f"new{i}", f"n{i}", labels=labels) for i in range(2)]
    claims = [claim(f"o{i}", allocated=True) for i in range(2)] + [claim(f"n{i}") for i in range(2)]
    (d,) = run(done + new, claims)
    assert d.outcome is GroupOutcome.WAIT, d


def test_allocations_carry_the_class_and_claim_device_config_as_the_scheduler_writes_it() -> None:
    view, nodes = setup()
    cls = view.classes["gpu.gpudra.io"]
    cls["spec"]["config"] = [{"opaque": {"driver": "gpu.gpudra.io", "parameters": {"a": 1}}}]
    c = claim("c", count=2)
    c["spec"]["devices"]["config"] = [
        {"requests": ["g"], "opaque": {"driver": "gpu.gpudra.io", "parameters": {"b": 2}}},
        {"opaque": {"driver": "other.example.com", "parameters": {"c": 3}}},
    ]
    (d,) = run([pod("p", "c")], [c], setup=(view, nodes))
    assert d.outcome is GroupOutcome.ALLOCATE
    assert d.allocations[("ns", "c")]["devices"]["config"] == [
        {"source": "FromClass", "opaque": {"driver": "gpu.gpudra.io", "parameters": {"a": 1}}},
        {
            "source": "FromClaim",
            "requests": ["g"],
            "opaque": {"driver": "gpu.gpudra.io", "parameters": {"b": 2}},
        },
        {"source": "FromClaim", "opaque": {"driver": "other.example.com", "parameters": {"c": 3}}},
    ]


def test_every_outcome_has_a_metrics_series() -> None:
    assert [v.value for v in GroupOutcome] == list(OUTCOMES)
