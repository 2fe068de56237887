"""The combination search on its own: scheduler semantics, with a trivial selector matcher."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.inputs import Device, parse_claim
from gpudra.allocation.search import NodeSearch, Rejection, RejectionKind, SelectorError, Solution
from gpudra_testkit.builders import (
    allocated,
    claim,
    counter_slice,
    device_class,
    exactly,
    node,
    nvlink,
    profile_slices,
)
from tests.unit.allocation.scenarios import no_cel, tainted_slice
from tests.unit.kubetypes.scenarios import TOLERATIONS


def view(*slices: list[dict[str, Any]], claims: list[dict[str, Any]] = ()) -> ClusterView:  # type: ignore[assignment]
    return ClusterView.from_objects(
        slices=[s for group in slices for s in group],
        classes=[device_class()],
        nodes=[node("n1"), node("n2")],
        claims=list(claims),
    )


def solve(
    v: ClusterView, *claims: dict[str, Any], node_name: str = "n1"
) -> tuple[list[Solution], NodeSearch]:
    s = NodeSearch(v, node_name, [parse_claim(c) for c in claims], matcher=no_cel)
    return list(s.solutions()), s


def names(sol: Solution) -> list[str]:
    return [c.device.name for c in sol.choices]


def test_first_solution_is_first_fit_and_all_are_combinations() -> None:
    sols, _ = solve(view(profile_slices("dgx1-v100", "n1")), claim(exactly("g", 2)))
    assert names(sols[0]) == ["gpu-0", "gpu-1"]
    assert len(sols) == 28  # C(8, 2): combinations, never permutations


def test_nvlink_group_constraint() -> None:
    v = view(profile_slices("dgx1-v100", "n1"))
    sols, _ = solve(v, claim(exactly("g", 4), constraints=[nvlink("g")]))
    assert [names(s) for s in sols] == [
        ["gpu-0", "gpu-1", "gpu-2", "gpu-3"],
        ["gpu-4", "gpu-5", "gpu-6", "gpu-7"],
    ]


def test_impossible_count_fails_fast_with_a_reason() -> None:
    sols, s = solve(view(profile_slices("dgx-h100", "n1")), claim(exactly("g", 9)))
    assert sols == [] and s.steps == 0
    assert s.diag.shortfalls["g"] == "needs 9 device(s), 8 remain after filtering"


def test_no_group_big_enough_is_explained() -> None:
    v = view(profile_slices("dgx1-v100", "n1"), claims=[allocated("x", "n1", "gpu-0", "gpu-4")])
    sols, s = solve(v, claim(exactly("g", 4), constraints=[nvlink("g")]))
    assert sols == []
    assert s.diag.rejected["g"]["already allocated"] == 2
    assert (
        "no 4 candidate devices share one value of gpu.gpudra.io/nvlinkGroup "
        "(largest such set: 3)" in s.diag.shortfalls["g"]
    )


def test_backtracking_over_shared_counters() -> None:
    sols, _ = solve(view(counter_slice("n1")), claim(exactly("g", 7)))
    assert names(sols[0]) == [f"device-{i}" for i in range(2, 9)]
    assert len(sols) == 1


def test_counters_count_existing_allocations() -> None:
    v = view(counter_slice("n1"), claims=[allocated("x", "n1", "device-2", "device-3")])
    sols, _ = solve(v, claim(exactly("g", 5)))
    assert names(sols[0]) == ["device-4", "device-5", "device-6", "device-7", "device-8"]
    sols, _ = solve(v, claim(exactly("g", 6)))
    assert (
        sols == []
    )  # 6 free devices left, but 70Gi - 20Gi in use - 60Gi does not fit with device-1


def test_first_available_tries_subrequests_in_order() -> None:
    c = claim(
        {
            "name": "g",
            "firstAvailable": [
                {"name": "eight", "deviceClassName": "gpu.gpudra.io", "count": 9},
                {"name": "two", "deviceClassName": "gpu.gpudra.io", "count": 2},
            ],
        }
    )
    sols, _ = solve(view(profile_slices("pcie-l4", "n1")), c)
    assert [x.request.name for x in sols[0].choices] == ["g/two", "g/two"]
    assert sols[0].results(sols[0].choices[0].claim)[0]["request"] == "g/two"


def test_allocation_mode_all() -> None:
    v = view(profile_slices("pcie-l4", "n1"))
    sols, _ = solve(
        v,
        claim(
            exactly("g", 0, allocationMode="All")
            | {"exactly": {"deviceClassName": "gpu.gpudra.io", "allocationMode": "All"}}
        ),
    )
    assert len(sols) == 1 and len(sols[0].choices) == 4
    busy = view(profile_slices("pcie-l4", "n1"), claims=[allocated("x", "n1", "gpu-1")])
    sols, s = solve(
        busy,
        claim(
            {"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io", "allocationMode": "All"}}
        ),
    )
    assert sols == [] and "1 matching device(s) already allocated" in s.diag.shortfalls["g"]


def test_admin_access_ignores_allocations() -> None:
    v = view(
        profile_slices("pcie-l4", "n1"),
        claims=[allocated("x", "n1", "gpu-0", "gpu-1", "gpu-2", "gpu-3")],
    )
    sols, _ = solve(v, claim(exactly("g", 1)))
    assert sols == []
    sols, _ = solve(v, claim(exactly("g", 1, adminAccess=True)))
    assert (
        names(sols[0]) == ["gpu-0"]
        and sols[0].results(sols[0].choices[0].claim)[0]["adminAccess"] is True
    )


@pytest.mark.parametrize("case", TOLERATIONS)
def test_the_allocator_applies_the_toleration_rule_to_device_taints(case: str) -> None:
    taint, raw, tolerated = TOLERATIONS[case]
    view = ClusterView.from_objects(
        slices=tainted_slice("n1", taint), classes=[device_class()], nodes=[node("n1")]
    )
    request: dict[str, Any] = exactly("g", tolerations=raw) if raw else exactly("g")
    search = NodeSearch(view, "n1", [parse_claim(claim(request))], matcher=no_cel)
    found = list(search.solutions())
    assert bool(found) is tolerated
    if not tolerated:
        (reason,) = search.diag.rejected["g"]
        assert " is tainted k=" in reason


def test_untolerated_taints_exclude_devices() -> None:
    slices = profile_slices("pcie-l4", "n1")
    slices[0]["spec"]["devices"][0]["taints"] = [
        {"key": "gpu.gpudra.io/xid", "value": "79", "effect": "NoSchedule"}
    ]
    v = view(slices)
    sols, search = solve(v, claim(exactly("g", 4)))
    assert sols == []
    rejected = search.diag.rejected["g"]
    assert rejected["gpu-0 is tainted gpu.gpudra.io/xid=79:NoSchedule (not tolerated)"] == 1
    tol = [{"key": "gpu.gpudra.io/xid", "operator": "Exists", "effect": "NoSchedule"}]
    sols, _ = solve(v, claim(exactly("g", 4, tolerations=tol)))
    assert len(sols) == 1


def test_match_attribute_across_two_requests_and_distinct() -> None:
    v = view(profile_slices("dgx1-v100", "n1"))
    c = claim(exactly("a", 3), exactly("b", 1), constraints=[nvlink()])
    sols, _ = solve(v, c)
    groups = {tuple(sorted(int(n[4]) for n in names(s))) for s in sols}
    assert all(set(g) <= {0, 1, 2, 3} or set(g) <= {4, 5, 6, 7} for g in groups)
    d = claim(exactly("a", 2), constraints=[{"distinctAttribute": "gpu.gpudra.io/numaNode"}])
    sols, _ = solve(v, d)
    assert (
        all(len({c.device.attrs["gpu.gpudra.io/numaNode"] for c in s.choices}) == 2 for s in sols)
        and len(sols) == 16
    )


def test_other_nodes_devices_are_not_reachable() -> None:
    v = view(profile_slices("pcie-l4", "n1"), profile_slices("dgx-h100", "n2"))
    sols, s = solve(v, claim(exactly("g", 5)), node_name="n1")
    assert sols == [] and s.diag.total_devices == 4
    sols, _ = solve(v, claim(exactly("g", 5)), node_name="n2")
    assert len(sols) == 56


def test_only_the_newest_pool_generation_counts() -> None:
    old = profile_slices("pcie-l4", "n1")
    new = profile_slices("pcie-l4", "n1")
    new[0]["spec"]["pool"]["generation"] = 2
    new[0]["metadata"]["name"] = "other"
    new[0]["spec"]["devices"] = new[0]["spec"]["devices"][:2]
    sols, _ = solve(view(old, new), claim(exactly("g", 3)))
    assert sols == []


def test_a_selector_error_is_a_typed_rejection_that_aborts_the_node_when_reached() -> None:
    """The device stays a candidate (first-fit reaches it and stops); its diagnosis line is
    plain text, with no marker smuggled inside the reason."""

    def failing(expression: str, dev: Device) -> tuple[bool, str | None]:
        return (False, "no such key: model") if dev.name == "gpu-0" else (True, None)

    v = view(profile_slices("dgx1-v100", "n1"))
    sel = [{"cel": {"expression": "device.attributes['gpu.gpudra.io'].model == 'x'"}}]
    s = NodeSearch(v, "n1", [parse_claim(claim(exactly("g", 1, selectors=sel)))], matcher=failing)
    assert s._rejection(v.devices_for("n1")[0], s.claims[0].requests[0].alternatives[0], []) == (
        Rejection(
            f"selector {sel[0]['cel']['expression']!r} failed on gpu-0: no such key: model",
            RejectionKind.SELECTOR_ERROR,
        )
    )
    with pytest.raises(SelectorError, match="failed on gpu-0"):
        list(s.solutions())
    (reason,) = s.diag.rejected["g"]
    assert reason.startswith("selector ") and "\x00" not in reason
