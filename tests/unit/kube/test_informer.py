"""The informer's store never lets an older object replace a newer one."""

from __future__ import annotations

from typing import Any

from gpudra.kube.informer import Informer
from gpudra.kube.resources import PODS


def obj(rv: str, gate: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "resourceVersion": rv},
        "spec": {"schedulingGates": [{"name": "g"}] if gate else []},
    }


def test_our_write_is_not_undone_by_the_watch_event_before_it() -> None:
    inf = Informer(None, PODS)  # type: ignore[arg-type]
    inf.observe(obj("10", gate=True))
    inf.observe(obj("12", gate=False))  # our ungate, ahead of its watch event
    assert not inf._put(obj("11", gate=True))  # an older event arriving late
    assert inf.get(("ns", "p")) == obj("12", gate=False)
    assert inf._put(obj("13", gate=False))
