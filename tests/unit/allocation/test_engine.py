"""The allocator end to end (real CEL): scoring picks better NVLink sets than first-fit,
explanations name the reason, bad claims are refused with the place and rule."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import InputError, parse_claim
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
from gpudra_testkit.deviceclasses import shipped_class

GPU_CLASS = shipped_class("gpu.gpudra.io")


def view(*groups: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None) -> ClusterView:
    slices = [s for g in groups for s in g]
    names = sorted({s["spec"]["nodeName"] for s in slices})
    return ClusterView.from_objects(
        slices=slices, classes=[GPU_CLASS], nodes=[node(n) for n in names], claims=claims or []
    )


def gpus(outcome: Any) -> list[int]:
    return sorted(int(c.device.name.split("-")[1]) for c in outcome.best.solution.choices)


def test_best_pair_on_dgx1_is_a_double_link() -> None:
    v = view(profile_slices("dgx1-v100", "n1"))
    c = [parse_claim(claim(exactly("g", 2)))]
    first = Allocator(v).allocate(c, best=False)
    best = Allocator(v).allocate(c)
    assert gpus(first) == [0, 1]  # first-fit: a single link
    assert v.devices  # sanity
    assert best.best is not None and best.best.score.bandwidth_gbps == 100.0
    assert best.best.score.bandwidth_share == 1.0
    assert best.runner_up is not None


def test_best_quad_on_a_partly_used_dgx1() -> None:
    v = view(profile_slices("dgx1-v100", "n1"), claims=[allocated("x", "n1", "gpu-3")])
    out = Allocator(v).allocate([parse_claim(claim(exactly("g", 4)))])
    assert gpus(out) == [4, 5, 6, 7]  # the intact quad, not 0,1,2 + a stray GPU


def test_prefers_the_partly_used_node_to_keep_whole_nodes_free() -> None:
    v = view(
        profile_slices("dgx-h100", "a"),
        profile_slices("dgx-h100", "b"),
        claims=[allocated("x", "b", "gpu-0")],
    )
    out = Allocator(v).allocate([parse_claim(claim(exactly("g", 1)))])
    assert out.best is not None and out.best.node == "b"


def test_impossible_request_is_fast_and_explained() -> None:
    v = view(profile_slices("dgx-h100", "n1"), profile_slices("dgx-h100", "n2"))
    started = time.perf_counter()
    out = Allocator(v).allocate([parse_claim(claim(exactly("g", 9)))])
    assert not out.feasible and time.perf_counter() - started < 2.0
    text = explain(out, [parse_claim(claim(exactly("g", 9)))])
    assert "cannot allocate ns/c on any of 2 node(s)" in text
    assert "node n1: 8 device(s)\n  needs at least 9 device(s); 8 of 8 are free" in text


def test_selector_rejections_are_counted_with_the_expression() -> None:
    v = view(profile_slices("dgx-h100", "n1"), profile_slices("pcie-l4", "n2"))
    sel = "device.capacity['gpu.gpudra.io'].memory.compareTo(quantity('40Gi')) >= 0"
    c = [parse_claim(claim(exactly("g", 3, selectors=[{"cel": {"expression": sel}}])))]
    out = Allocator(v).allocate(c, ["n2"])
    text = explain(out, c)
    assert f"rejected 4 selector {sel!r} is false" in text
    out = Allocator(v).allocate(c)
    assert out.best is not None and out.best.node == "n1"


def test_missing_attribute_is_a_runtime_error_per_device() -> None:
    v = view(profile_slices("pcie-l4", "n1"))
    sel = "device.attributes['gpu.gpudra.io'].model == 'x'"
    c = [parse_claim(claim(exactly("g", 1, selectors=[{"cel": {"expression": sel}}])))]
    out = Allocator(v).allocate(c)
    assert not out.feasible
    assert "model" in explain(out, c)


def test_backtracking_benchmark_shape_is_found() -> None:
    v = ClusterView.from_objects(
        slices=counter_slice("n1"), classes=[device_class()], nodes=[node("n1")]
    )
    out = Allocator(v).allocate([parse_claim(claim(exactly("g", 7)))])
    assert out.best is not None
    assert sorted(c.device.name for c in out.best.solution.choices) == [
        f"device-{i}" for i in range(2, 9)
    ]


BAD = {
    "unknown class": (
        claim(exactly("g", 1, cls="tpu.example.com")),
        "device class 'tpu.example.com' does not exist (known: gpu.gpudra.io)",
    ),
    "invalid CEL": (
        claim(exactly("g", 1, selectors=[{"cel": {"expression": "device.driver =="}}])),
        "invalid CEL selector",
    ),
    "count over the limit": (claim(exactly("g", 33)), "count 33; allowed: 1..32"),
    "too many requests": (
        claim(*[exactly(f"r{i}") for i in range(33)]),
        "33 requests; at most 32 allowed",
    ),
    "constraint on unknown request": (
        claim(exactly("g"), constraints=[nvlink("h")]),
        "names unknown request(s) ['h']",
    ),
    "both exactly and firstAvailable": (
        claim({"name": "g", "exactly": {"deviceClassName": "x"}, "firstAvailable": []}),
        "set exactly one of exactly or firstAvailable",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_claims_are_refused_clearly(case: str) -> None:
    raw, message = BAD[case]
    v = view(profile_slices("pcie-l4", "n1"))
    with pytest.raises(InputError, match=None) as e:
        Allocator(v).allocate([parse_claim(raw)])
    assert message in str(e.value)
    assert "ns/c" in str(e.value)


def test_first_available_fallback_is_not_ruled_out_by_the_capacity_precheck() -> None:
    v = view(profile_slices("dgx-h100", "n1"))
    c = claim(
        {
            "name": "g",
            "firstAvailable": [
                {"name": "big", "deviceClassName": "gpu.gpudra.io", "count": 9},
                {"name": "small", "deviceClassName": "gpu.gpudra.io", "count": 1},
            ],
        }
    )
    out = Allocator(v).allocate([parse_claim(c)])
    assert out.best is not None
    assert [ch.request.name for ch in out.best.solution.choices] == ["g/small"]


def test_selector_runtime_error_fails_the_pod_only_if_the_search_reaches_it() -> None:
    """kube-scheduler: a selector error on a device its first-fit search reaches fails the
    whole pod (SchedulerError); one it never reaches does not matter."""
    slices = profile_slices("pcie-l4", "n1")
    slices[0]["spec"]["devices"][0]["attributes"]["model"] = {"string": "x"}
    v = view(slices)
    sel = [{"cel": {"expression": "device.attributes['gpu.gpudra.io'].model == 'x'"}}]
    one = Allocator(v).allocate([parse_claim(claim(exactly("g", 1, selectors=sel)))])
    assert one.best is not None and one.best.solution.choices[0].device.name == "gpu-0"
    two = [parse_claim(claim(exactly("g", 2, selectors=sel)))]
    out = Allocator(v).allocate(two)
    assert out.best is None and "no such key" in out.selector_error
    assert "guard attribute lookups with has() or 'in'" in explain(out, two)


def test_mig_placements_fill_a_partly_used_gpu_first() -> None:
    from gpudra.catalogue.catalogue import build_catalogue
    from gpudra.nvml.mock import MockBackend, load_machine
    from gpudra.resourceslices.builder import desired_slices

    inv = MockBackend(load_machine("dgx-h100-mig"), node_name="n1").inventory()
    slices = desired_slices(
        build_catalogue(inv, dynamic=frozenset(range(8))), driver="gpu.gpudra.io"
    )
    mig_class = device_class("mig.gpudra.io")
    busy = allocated("x", "n1", "gpu-5-mig-3g40gb-9-0")
    v = ClusterView.from_objects(
        slices=slices, classes=[mig_class], nodes=[node("n1")], claims=[busy]
    )
    sel = [
        {
            "cel": {
                "expression": "device.attributes['gpu.gpudra.io'].type == 'mig' && "
                "device.attributes['gpu.gpudra.io'].profile == '1g.10gb'"
            }
        }
    ]
    c = [parse_claim(claim(exactly("g", 1, cls="mig.gpudra.io", selectors=sel)))]
    first = Allocator(v).allocate(c, best=False)
    best = Allocator(v).allocate(c)
    assert first.best is not None and first.best.solution.choices[0].device.name.startswith("gpu-0")
    assert best.best is not None
    assert best.best.solution.choices[0].device.name.startswith("gpu-5-mig-1g10gb-19-")


# true on an L4; false || error on a DGX-1V (it has no NVSwitch domain), so it fails there
L4_OR_NVSWITCH = (
    "device.attributes['gpu.gpudra.io'].productName == 'NVIDIA L4' || "
    "device.attributes['gpu.gpudra.io'].nvlinkDomain == 'nvswitch-0'"
)


def l4_claim() -> Any:
    return parse_claim(claim(exactly("g", 1, selectors=[{"cel": {"expression": L4_OR_NVSWITCH}}])))


def test_a_selector_failing_on_a_node_not_searched_fails_the_claim_as_in_the_scheduler() -> None:
    """kube-scheduler filters every node and one selector error fails the pod: the best mode
    stops after the L4 node (the DGX-1V cannot score higher) but still finds the error there."""
    v = view(profile_slices("pcie-l4", "a-l4"), profile_slices("dgx1-v100", "b-dgx1"))
    out = Allocator(v).allocate([l4_claim()])
    assert out.best is None and out.nodes_tried == 1  # b-dgx1 was not searched for a placement
    assert "node b-dgx1" in out.selector_error and "no such key" in out.selector_error


def test_the_controller_does_not_fail_a_claim_on_a_node_it_need_not_search() -> None:
    v = view(profile_slices("pcie-l4", "a-l4"), profile_slices("dgx1-v100", "b-dgx1"))
    out = Allocator(v, scheduler_errors=False).allocate([l4_claim()])
    assert out.best is not None and out.best.node == "a-l4" and not out.selector_error


def test_a_selector_failing_on_a_device_in_use_does_not_fail_the_claim() -> None:
    """The scheduler passes over a device in use before its selectors run."""
    busy = allocated("busy", "b-dgx1", *(f"gpu-{i}" for i in range(8)))
    v = view(
        profile_slices("pcie-l4", "a-l4"), profile_slices("dgx1-v100", "b-dgx1"), claims=[busy]
    )
    out = Allocator(v).allocate([l4_claim()])
    assert out.best is not None and out.best.node == "a-l4", out.selector_error
