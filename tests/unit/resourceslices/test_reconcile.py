"""Reconcile plans: no-op when unchanged, one generation bump per change, stale slices go."""

from __future__ import annotations

import copy
from typing import Any

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceslices.builder import desired_slices
from gpudra.resourceslices.reconcile import HASH_ANNOTATION, plan


def desired(profile: str = "pcie-l4", max_devices: int = 128) -> list[dict[str, Any]]:
    inv = MockBackend(load_machine(profile), node_name="n").inventory()
    return desired_slices(build_catalogue(inv), driver="gpu.gpudra.io", max_devices=max_devices)


def as_stored(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(slices)
    for i, s in enumerate(out):
        s["metadata"]["resourceVersion"] = str(100 + i)
        s["metadata"]["uid"] = f"uid-{i}"
    return out


def test_first_publish_creates_at_generation_1() -> None:
    p = plan([], desired())
    assert p.generation == 1 and len(p.create) == 1 and not p.update and not p.delete
    assert p.create[0]["spec"]["pool"]["generation"] == 1
    assert HASH_ANNOTATION in p.create[0]["metadata"]["annotations"]


def test_unchanged_is_a_no_op_even_if_the_server_rewrote_quantities() -> None:
    stored = as_stored(plan([], desired()).create)
    stored[0]["spec"]["devices"][0]["capacity"]["memory"]["value"] = "22494Mi"
    p = plan(stored, desired())
    assert p.empty and p.generation == 1


def test_a_change_bumps_the_generation_once_and_updates_in_place() -> None:
    stored = as_stored(plan([], desired()).create)
    changed = desired()
    changed[0]["spec"]["devices"].pop()
    p = plan(stored, changed)
    assert p.generation == 2 and len(p.update) == 1 and not p.create
    assert p.update[0]["metadata"]["resourceVersion"] == "100"


def test_shrinking_pool_deletes_extra_slices() -> None:
    stored = as_stored(plan([], desired("dgx-h100", max_devices=4)).create)
    p = plan(stored, desired("dgx-h100", max_devices=8))
    assert [s["metadata"]["name"] for s in p.delete] == [stored[1]["metadata"]["name"]]
    assert p.update[0]["spec"]["pool"] == {"name": "n", "generation": 2, "resourceSliceCount": 1}


def test_mixed_generations_are_repaired() -> None:
    stored = as_stored(plan([], desired("dgx-h100", max_devices=4)).create)
    stored[1]["spec"]["pool"]["generation"] = 7
    p = plan(stored, desired("dgx-h100", max_devices=4))
    assert p.generation == 8 and len(p.update) == 2
