"""One toleration rule for device and node taints: the rule itself and the allocator's use of
it, over the table the controller's node fit is tested with too (scenarios.TOLERATIONS)."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.inputs import parse_claim
from gpudra.allocation.search import NodeSearch
from gpudra.allocation.tolerations import Toleration, untolerated
from gpudra_testkit.builders import claim, device_class, exactly, node
from tests.unit.allocation.scenarios import TOLERATIONS, no_cel, tainted_slice


@pytest.mark.parametrize("case", TOLERATIONS)
def test_the_rule(case: str) -> None:
    taint, raw, tolerated = TOLERATIONS[case]
    tolerations = [Toleration.from_wire(t) for t in raw]
    assert (untolerated([taint], tolerations) is None) is tolerated


@pytest.mark.parametrize("case", TOLERATIONS)
def test_the_allocator_applies_it_to_device_taints(case: str) -> None:
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


def test_written_tolerations_keep_only_what_is_set() -> None:
    t = Toleration.from_wire({"key": "k", "operator": "Exists"})
    assert t == Toleration("k", "Exists", "", "")
    assert t.to_wire() == {"key": "k", "operator": "Exists"}
    assert Toleration.from_wire({}).to_wire() == {"operator": "Equal"}
