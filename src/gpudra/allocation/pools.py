"""Which ResourceSlices form which pools, and which slices the allocator must not use (pure).

A device is identified by (driver, pool, device), so a pool is (driver, pool name): its
slices are merged, and only the highest generation is used (a pool with fewer slices than
``resourceSliceCount`` is incomplete).  Two rules keep one node's slices from hiding or
aliasing another node's devices; the slices they leave out are returned with the reason, for
the controller's log and the explain output:

- gpudra's own node daemons name their pool after their node (``resourceslices.builder``),
  and the chart's admission policy pins both ``spec.nodeName`` and ``spec.pool.name`` to the
  daemon's node.  A node-local slice of ``own_driver`` whose pool is named otherwise can never
  be a legitimate gpudra pool (a compromised daemon, or one admitted before the policy), so it
  is ignored: it would otherwise merge into, or with a higher generation replace, the named
  node's pool.  Other drivers may name their pools freely (the API does not require the node
  name), so the rule is for ``own_driver`` only.
- a pool whose slices (of any generation) disagree on ``spec.nodeName`` is ambiguous for
  every driver: the same (driver, pool, device) would name devices on two nodes, and an
  allocation result could not say which.  The whole pool is ignored rather than guessing
  which node owns it.  For ``own_driver`` no node daemon can cause this: the policy refuses
  slices without a node, and the first rule has already dropped any impostor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gpudra.allocation.inputs import Device, Pool, qualify
from gpudra.api.meta import metadata
from gpudra.api.slice import (
    Counter,
    SliceDevice,
    device_taints,
    slice_count,
    slice_devices,
    slice_driver,
    slice_generation,
    slice_node_name,
    slice_pool_name,
    slice_shared_counters,
    slice_spec,
)
from gpudra.kubetypes.quantity import Quantity, parse_quantity


@dataclass(frozen=True)
class IgnoredSlices:
    """Slices left out of every pool: which, and a sentence saying why."""

    driver: str
    pool: str
    slices: tuple[str, ...]  # metadata.name of each
    reason: str


@dataclass(frozen=True)
class Pools:
    pools: list[Pool]
    ignored: list[IgnoredSlices]


def _attr_value(raw: dict[str, Any]) -> tuple[str, Any]:
    for kind in ("int", "bool", "string", "version"):
        if kind in raw:
            return kind, raw[kind]
    return "unknown", None


def _counters(counters: dict[str, Counter]) -> dict[str, Quantity]:
    return {n: parse_quantity(v["value"]) for n, v in counters.items()}


def parse_device(driver: str, pool: str, dev: SliceDevice, node: str | None) -> Device:
    attrs = {qualify(driver, k): _attr_value(v) for k, v in (dev.get("attributes") or {}).items()}
    consumes = tuple(
        (c["counterSet"], _counters(c.get("counters", {})))
        for c in dev.get("consumesCounters") or []
    )
    return Device(
        driver=driver,
        pool=pool,
        name=dev["name"],
        raw=dev,
        node=dev.get("nodeName", node),
        attrs=attrs,
        consumes=consumes,
        taints=tuple(device_taints(dev)),
        multi=bool(dev.get("allowMultipleAllocations")),
    )


def _name(s: dict[str, Any]) -> str:
    return str(metadata(s).get("name", "?"))


def _usable(
    slices: list[dict[str, Any]], own_driver: str
) -> tuple[list[dict[str, Any]], list[IgnoredSlices]]:
    """The slices both rules keep, and what they leave out."""
    ignored: list[IgnoredSlices] = []
    by_pool: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in slices:
        node, pool = slice_node_name(s), slice_pool_name(s)
        if slice_driver(s) == own_driver and node and pool != node:
            ignored.append(
                IgnoredSlices(
                    driver=own_driver,
                    pool=pool,
                    slices=(_name(s),),
                    reason=(
                        f"ResourceSlice {_name(s)} of node {node!r} names pool {pool!r}: a "
                        f"{own_driver} pool must be named after its node, so the slice is "
                        "ignored"
                    ),
                )
            )
            continue
        by_pool[(slice_driver(s), pool)].append(s)
    kept: list[dict[str, Any]] = []
    for (driver, pool), group in by_pool.items():
        nodes = sorted({slice_node_name(s) or "" for s in group})
        if len(nodes) == 1:
            kept += group
            continue
        names = ", ".join(repr(n) if n else "none" for n in nodes)
        ignored.append(
            IgnoredSlices(
                driver=driver,
                pool=pool,
                slices=tuple(_name(s) for s in group),
                reason=(
                    f"pool {pool!r} of driver {driver} has slices of different nodes "
                    f"({names}): (driver, pool, device) would name devices on more than one "
                    "node, so the whole pool is ignored"
                ),
            )
        )
    return kept, ignored


def build_pools(slices: list[dict[str, Any]], *, own_driver: str) -> Pools:
    """Group slices into pools, keeping only each pool's highest generation; ``own_driver``
    is the driver gpudra's node daemons publish (its node-local pools carry the node name)."""
    usable, ignored = _usable(slices, own_driver)
    newest: dict[tuple[str, str], int] = defaultdict(int)
    for s in usable:
        key = (slice_driver(s), slice_pool_name(s))
        newest[key] = max(newest[key], slice_generation(s))
    pools: dict[tuple[str, str], Pool] = {}
    for s in usable:
        key = (slice_driver(s), slice_pool_name(s))
        gen = slice_generation(s)
        if gen != newest[key]:
            continue
        spec = slice_spec(s)
        pool = pools.setdefault(
            key,
            Pool(
                driver=key[0],
                name=key[1],
                generation=gen,
                expected_slices=slice_count(s),
                node_name=slice_node_name(s),
                all_nodes=bool(spec.get("allNodes")),
                node_selector=spec.get("nodeSelector"),
            ),
        )
        pool.slices += 1
        for cs in slice_shared_counters(s):
            pool.counters[cs["name"]] = _counters(cs.get("counters", {}))
        for dev in slice_devices(s):
            pool.devices.append(parse_device(key[0], key[1], dev, slice_node_name(s)))
    return Pools(pools=list(pools.values()), ignored=ignored)
