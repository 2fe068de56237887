"""One toleration rule for device and node taints, over the table the allocator's device taints
and the controller's node fit are tested with too (scenarios.TOLERATIONS)."""

from __future__ import annotations

import pytest

from gpudra.kubetypes.tolerations import Toleration, untolerated
from tests.unit.kubetypes.scenarios import TOLERATIONS


@pytest.mark.parametrize("case", TOLERATIONS)
def test_the_rule(case: str) -> None:
    taint, raw, tolerated = TOLERATIONS[case]
    tolerations = [Toleration.from_wire(t) for t in raw]
    assert (untolerated([taint], tolerations) is None) is tolerated


def test_written_tolerations_keep_only_what_is_set() -> None:
    t = Toleration.from_wire({"key": "k", "operator": "Exists"})
    assert t == Toleration("k", "Exists", "", "")
    assert t.to_wire() == {"key": "k", "operator": "Exists"}
    assert Toleration.from_wire({}).to_wire() == {"operator": "Equal"}
