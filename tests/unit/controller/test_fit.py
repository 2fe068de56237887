"""Node fit: taints by the allocator's toleration rule (the shared table), and requests
against allocatable in exact quantities, as the scheduler counts them."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.controller.fit import fit_problem, pod_requests
from gpudra.kubetypes.quantity import Quantity
from tests.unit.kubetypes.scenarios import TOLERATIONS


def pod(cpu: str = "1", memory: str | None = None, **spec: Any) -> dict[str, Any]:
    requests = {"cpu": cpu} | ({"memory": memory} if memory else {})
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}], **spec},
    }


def node(taints: list[dict[str, Any]] | None = None, **allocatable: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "n", "labels": {}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "10"} | allocatable},
    }


@pytest.mark.parametrize("case", TOLERATIONS)
def test_node_taints_follow_the_shared_toleration_rule(case: str) -> None:
    taint, tolerations, tolerated = TOLERATIONS[case]
    problem = fit_problem(pod(tolerations=tolerations), node([taint]), [])
    if tolerated:
        assert problem is None
    else:
        assert problem == f"untolerated node taint {taint['key']}:{taint['effect']}"


EXACT = {
    # ten pods of 0.1 CPU fill one CPU exactly; in floats 0.1 * 10 is 0.9999999999999999
    "tenths of a CPU fill a CPU": (["0.1"] * 9, "100m", {"cpu": "1"}, None),
    "one nano-CPU too many": ([], "1000000001n", {"cpu": "1"}, "insufficient cpu"),
    "one byte too many beyond float precision": (
        [],
        "9007199254740993",  # 2**53 + 1: the same float as 2**53
        {"memory": "9007199254740992"},
        "insufficient memory",
    ),
    "binary and decimal suffixes": (["512Mi"], "1536Mi", {"memory": "2Gi"}, None),
    "a milli-CPU over after ten tenths": (["100m"] * 10, "1m", {"cpu": "1"}, "insufficient cpu"),
}


@pytest.mark.parametrize("case", EXACT)
def test_requests_are_counted_exactly(case: str) -> None:
    others, want, allocatable, problem = EXACT[case]
    resource = next(iter(allocatable))
    on_node = [pod(**{resource: q}) if resource == "cpu" else pod("0", q) for q in others]
    mine = pod(want) if resource == "cpu" else pod("0", want)
    assert fit_problem(mine, node(**allocatable), on_node) == problem


def test_effective_requests_are_exact_quantities() -> None:
    p = pod("100m", "1Gi", initContainers=[{"resources": {"requests": {"cpu": "0.25"}}}])
    assert pod_requests(p) == {
        "cpu": Quantity.parse("250m"),
        "memory": Quantity.parse("1073741824"),
        "pods": Quantity.of(1),
    }


def test_usage_summed_once_per_pass_gives_the_same_answers() -> None:
    """NodeUsage (the pass's sums) plus the pods placed beside them answers as the node's
    whole pod list does."""
    from gpudra.controller.fit import NodeUsage

    on_node = [pod(cpu="3"), pod(cpu="2")]
    placed = [pod(cpu="2")]
    usage = NodeUsage({"n": on_node})
    for cpu in ("1", "1500m", "8"):
        mine = pod(cpu=cpu)
        whole = fit_problem(mine, node(cpu="8"), on_node + placed)
        fast = fit_problem(mine, node(cpu="8"), placed, used=usage.of("n"))
        assert fast == whole, cpu
    assert fit_problem(pod(cpu="1"), node(cpu="8"), placed, used=usage.of("n")) is None  # 8 of 8
    assert (
        fit_problem(pod(cpu="2"), node(cpu="8"), placed, used=usage.of("n")) == "insufficient cpu"
    )
