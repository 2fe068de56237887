"""Consumable capacity (KEP-5075) in the allocator: the capacity arithmetic, shares in the
search, in the cluster view and in scoring, with kube-scheduler's rules."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.allocation.capacity import (
    Capacity,
    Policy,
    consumed,
    consumption,
    parse_capacities,
    refusal,
    text,
    violates,
    wire,
)
from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import InputError, parse_claim
from gpudra.kubetypes.quantity import Quantity
from gpudra_testkit.builders import DRIVER, claim, device_class, exactly, node, resource_slice

MI = 1 << 20
H100_MIB = 81559


def q(text_: str) -> Quantity:
    return Quantity.parse(text_)


def shared_gpu(
    name: str, mib: int = H100_MIB, *, shares: int = 0, multi: bool = True, counters: bool = False
) -> dict[str, Any]:
    """A GPU published as the node daemon does in shared mode."""
    default = (mib // shares if shares else mib) * MI
    cap: dict[str, Any] = {
        "memory": {
            "value": str(mib * MI),
            "requestPolicy": {
                "default": str(default),
                "validRange": {"min": "1Mi", "max": str(mib * MI), "step": "1Mi"},
            },
        },
        "multiprocessors": {
            "value": "132",
            "requestPolicy": {
                "default": "0",
                "validRange": {"min": "0", "max": "132", "step": "1"},
            },
        },
    }
    if shares:
        cap["shares"] = {
            "value": str(shares),
            "requestPolicy": {
                "default": "1",
                "validRange": {"min": "1", "max": str(shares), "step": "1"},
            },
        }
    if not multi:
        cap = {k: {"value": v["value"]} for k, v in cap.items()}
    dev: dict[str, Any] = {
        "name": name,
        "attributes": {"type": {"string": "gpu"}},
        "capacity": cap,
    }
    if multi:
        dev["allowMultipleAllocations"] = True
    if counters:
        dev["consumesCounters"] = [{"counterSet": "power", "counters": {"w": {"value": "700"}}}]
    return dev


def view(
    devices: list[dict[str, Any]], claims: list[dict[str, Any]] = (), **spec: Any
) -> ClusterView:  # type: ignore[assignment]
    return ClusterView.from_objects(
        slices=[resource_slice("n1", devices, **spec)],
        classes=[device_class()],
        nodes=[node("n1")],
        claims=list(claims),
    )


def memory_claim(name: str, amount: str | None, count: int = 1, **kw: Any) -> dict[str, Any]:
    extra: dict[str, Any] = dict(kw)
    if amount is not None:
        extra["capacity"] = {"requests": {"memory": amount}}
    return claim(exactly("g", count, **extra), name=name)


def as_allocated(name: str, allocation: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "status": {"allocation": allocation}}


def place(v: ClusterView, *claims: dict[str, Any], ids: list[str] | None = None) -> Any:
    """Allocate the claims one after another (each its own decision), as the controller
    does; returns the last outcome and the allocations written."""
    allocator = Allocator(v)
    written = []
    outcome = None
    made = iter(range(1000))
    for c in claims:
        parsed = parse_claim(c)
        outcome = allocator.allocate([parsed], ["n1"])
        if outcome.best is None:
            break
        allocator.commit(outcome.best)
        written.append(
            outcome.best.allocation(parsed, timestamp="t", share_id=lambda: f"share-{next(made)}")
        )
    return outcome, written


# --- the capacity arithmetic -------------------------------------------------------------


def test_request_rounds_up_to_the_next_step_from_min() -> None:
    cap = parse_capacities(shared_gpu("gpu-0")["capacity"])["memory"]
    # 20G = 20e9 bytes = 19073.49 MiB: one step of 1Mi from min 1Mi rounds it to 19074Mi
    assert consumed(q("20G"), cap) == q("19074Mi")
    assert consumed(q("20Gi"), cap) == q("20Gi")
    assert consumed(q("1"), cap) == q("1Mi")  # below min: min
    assert consumed(None, cap) == q(f"{H100_MIB}Mi")  # not asked: the default (whole memory)


def test_valid_values_round_up_and_reject_above_all() -> None:
    cap = Capacity(q("8"), Policy(default=q("2"), valid_values=(q("2"), q("4"), q("8"))))
    assert consumed(q("3"), cap) == q("4")
    assert consumed(q("9"), cap) == q("9")
    assert violates(q("9"), cap.policy) and not violates(q("4"), cap.policy)


def test_policy_max_and_missing_capacity_refuse() -> None:
    caps = parse_capacities(shared_gpu("gpu-0")["capacity"])
    assert refusal({"memory": q("100Gi")}, caps, multi=True) == (
        "capacity memory: 100Gi is not allowed by its request policy"
    )
    assert refusal({"bandwidth": q("1")}, caps, multi=True) == "has no capacity bandwidth"


def test_every_capacity_is_consumed_defaults_included() -> None:
    caps = parse_capacities(shared_gpu("gpu-0", shares=4)["capacity"])
    assert consumption({"memory": q("20G")}, caps) == {
        "memory": q("19074Mi"),
        "multiprocessors": q("0"),
        "shares": q("1"),
    }


def test_quantity_text_and_wire_forms() -> None:
    assert text(q("19074Mi")) == "19074Mi" and text(q("80Gi")) == "80Gi"
    assert wire(q("19074Mi")) == str(19074 * MI) and wire(q("500m")) == "500m"


# --- shares in the search ----------------------------------------------------------------


def test_four_20G_shares_fit_one_h100_and_a_fifth_is_refused_with_the_reason() -> None:
    v = view([shared_gpu("gpu-0")])
    claims = [memory_claim(f"c{i}", "20G") for i in range(5)]
    outcome, written = place(v, *claims)
    assert len(written) == 4
    assert all(w["devices"]["results"][0]["device"] == "gpu-0" for w in written)
    first = written[0]["devices"]["results"][0]
    assert first["shareID"] == "share-0"
    assert first["consumedCapacity"] == {
        "memory": str(19074 * MI),
        "multiprocessors": "0",
    }
    assert outcome is not None and outcome.best is None
    why = explain(outcome, [parse_claim(claims[4])])
    assert "gpu-0 capacity memory: the share needs 19074Mi, 5263Mi of 81559Mi left" in why


def test_four_20Gi_shares_do_not_fit_an_h100s_81559Mi() -> None:
    """20Gi x 4 = 81920Mi: more than an H100 80GB has (81559Mi), so the 4th is refused."""
    _, written = place(
        view([shared_gpu("gpu-0")]), *[memory_claim(f"c{i}", "20Gi") for i in range(4)]
    )
    assert len(written) == 3


def test_a_claim_without_a_memory_request_takes_the_default() -> None:
    _, written = place(
        view([shared_gpu("gpu-0", shares=4)]), *[memory_claim(f"c{i}", None) for i in range(5)]
    )
    assert len(written) == 4  # default memory 81559Mi // 4 each, and 4 shares
    _, alone = place(view([shared_gpu("gpu-0")]), memory_claim("a", None), memory_claim("b", "1Mi"))
    assert len(alone) == 1  # without shares the default is the whole memory


def test_shares_fill_a_shared_gpu_before_starting_another() -> None:
    v = view([shared_gpu("gpu-0"), shared_gpu("gpu-1")])
    allocator = Allocator(v)
    first = allocator.allocate([parse_claim(memory_claim("a", "10Gi"))], ["n1"])
    assert first.best is not None
    allocator.commit(first.best)
    placed = first.best.solution.choices[0].device.name
    second = allocator.allocate([parse_claim(memory_claim("b", "10Gi"))], ["n1"])
    assert second.best is not None and second.best.solution.choices[0].device.name == placed


def test_existing_shares_in_the_cluster_count() -> None:
    v0 = view([shared_gpu("gpu-0")])
    _, written = place(v0, *[memory_claim(f"c{i}", "20G") for i in range(3)])
    existing = [as_allocated(f"c{i}", w) for i, w in enumerate(written)]
    v = view([shared_gpu("gpu-0")], claims=existing)
    assert v.share_count[(DRIVER, "n1", "gpu-0")] == 3
    assert v.in_use == set()  # a share does not take the device
    _, more = place(v, memory_claim("d", "20G"), memory_claim("e", "20G"))
    assert len(more) == 1


def test_one_claim_may_hold_two_shares_of_one_device_in_two_requests() -> None:
    c = claim(
        exactly("a", capacity={"requests": {"memory": "40Gi"}}),
        exactly("b", capacity={"requests": {"memory": "30Gi"}}),
        name="two",
    )
    outcome, written = place(view([shared_gpu("gpu-0")]), c)
    results = written[0]["devices"]["results"]
    assert [r["device"] for r in results] == ["gpu-0", "gpu-0"]
    assert [r["shareID"] for r in results] == ["share-0", "share-1"]  # one UID per share
    too_much = claim(
        exactly("a", capacity={"requests": {"memory": "50Gi"}}),
        exactly("b", capacity={"requests": {"memory": "40Gi"}}),
        name="big",
    )
    outcome, _ = place(view([shared_gpu("gpu-0")]), too_much)
    assert outcome is not None and outcome.best is None


def test_one_request_never_takes_the_same_device_twice() -> None:
    outcome, _ = place(view([shared_gpu("gpu-0")]), memory_claim("two", "1Gi", count=2))
    assert outcome is not None and outcome.best is None


def test_a_plain_device_filters_on_capacity_and_is_taken_whole() -> None:
    plain = shared_gpu("gpu-0", multi=False)
    outcome, _ = place(view([plain]), memory_claim("big", "90Gi"))
    assert outcome is not None and outcome.best is None
    assert "gpu-0 capacity memory is 81559Mi, less than the 90Gi asked" in explain(
        outcome, [parse_claim(memory_claim("big", "90Gi"))]
    )
    _, written = place(view([plain]), memory_claim("a", "10Gi"), memory_claim("b", "10Gi"))
    assert len(written) == 1  # no allowMultipleAllocations: the first claim takes it
    assert "shareID" not in written[0]["devices"]["results"][0]


def test_only_the_first_share_draws_the_counters() -> None:
    counters = [{"name": "power", "counters": {"w": {"value": "1000"}}}]
    v = view([shared_gpu("gpu-0", counters=True)], sharedCounters=counters)
    _, written = place(v, *[memory_claim(f"c{i}", "10Gi") for i in range(3)])
    assert len(written) == 3  # 700 of 1000 drawn once, not three times
    assert v.counters_used[(DRIVER, "n1", "power")]["w"] == q("700")


def test_allocation_mode_all_fails_while_a_device_has_no_capacity_left() -> None:
    v = view([shared_gpu("gpu-0"), shared_gpu("gpu-1")])
    _, written = place(v, memory_claim("full", "81559Mi"))
    all_claim = claim(
        exactly("g", 0, allocationMode="All", capacity={"requests": {"memory": "1Gi"}}), name="all"
    )
    del all_claim["spec"]["devices"]["requests"][0]["exactly"]["count"]
    outcome = Allocator(v).allocate([parse_claim(all_claim)], ["n1"])
    assert written and outcome.best is None


def test_release_gives_the_capacity_back() -> None:
    v = view([shared_gpu("gpu-0")])
    allocator = Allocator(v)
    out = allocator.allocate([parse_claim(memory_claim("a", "79Gi"))], ["n1"])
    assert out.best is not None
    allocator.commit(out.best)
    assert allocator.allocate([parse_claim(memory_claim("b", "1Gi"))], ["n1"]).best is None
    allocator.release(out.best)
    assert v.share_count == {} and v.shares_used == {}
    assert allocator.allocate([parse_claim(memory_claim("b", "1Gi"))], ["n1"]).best is not None


@pytest.mark.parametrize("bad", ["lots", "-1Gi"])
def test_a_bad_capacity_request_is_an_input_error_with_the_place(bad: str) -> None:
    with pytest.raises(InputError, match=r"capacity.requests\[memory\]"):
        parse_claim(memory_claim("bad", bad))
