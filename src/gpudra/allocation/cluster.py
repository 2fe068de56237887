"""The state the allocator decides against: pools, classes, nodes and what is already in use.

Built from API objects (slices, DeviceClasses, ResourceClaims with allocations, Nodes).
Slices that ``allocation.pools`` refuses (an own-driver pool not named after its node, a pool
spread over several nodes) are in ``ignored``, with the reason, and in no pool.
In-use devices and counter consumption come from every existing allocation except admin
access ones, exactly the set the scheduler excludes.  An allocation with a ``shareID`` (one
share of a device with ``allowMultipleAllocations``, consumable capacity) does not put its
device in use: it adds its ``consumedCapacity`` to what the device's shares take, and the
first share of a device draws the device's counters (later shares do not draw them again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpudra.allocation.capacity import Amounts
from gpudra.allocation.inputs import Device, DeviceKey, Pool
from gpudra.allocation.pools import IgnoredSlices, build_pools
from gpudra.api.claim import claim_results
from gpudra.api.meta import name_of
from gpudra.kubetypes.nodeselect import selector_matches
from gpudra.kubetypes.quantity import Quantity, QuantityError, parse_quantity
from gpudra.resourceapi import DRIVER_NAME

CounterKey = tuple[str, str, str]  # driver, pool, counter set

ZERO = Quantity.of(0)


@dataclass
class ClusterView:
    pools: list[Pool]
    classes: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    in_use: set[DeviceKey] = field(default_factory=set)
    counters_used: dict[CounterKey, dict[str, Quantity]] = field(default_factory=dict)
    devices: dict[DeviceKey, Device] = field(default_factory=dict)
    ignored: list[IgnoredSlices] = field(default_factory=list)
    # consumable capacity: what the shares of each device take, and how many there are
    shares_used: dict[DeviceKey, dict[str, Quantity]] = field(default_factory=dict)
    share_count: Counter[DeviceKey] = field(default_factory=Counter)
    _node_devices: dict[str, list[Device]] = field(default_factory=dict, repr=False)
    _pool_index: dict[tuple[str, str], Pool] = field(default_factory=dict, repr=False)
    _used_local: Counter[str | None] = field(default_factory=Counter, repr=False)
    _has_shared: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_objects(
        cls,
        *,
        slices: list[dict[str, Any]],
        classes: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        claims: list[dict[str, Any]] = (),  # type: ignore[assignment]
        own_driver: str = DRIVER_NAME,
    ) -> ClusterView:
        """``own_driver``: the driver gpudra's node daemons publish (see ``allocation.pools``)."""
        built = build_pools(slices, own_driver=own_driver)
        pools = built.pools
        view = cls(
            pools=pools,
            classes={name_of(c): c for c in classes},
            nodes={name_of(n): n for n in nodes},
            ignored=built.ignored,
        )
        view.devices = {d.key: d for p in pools for d in p.devices}
        for claim in claims:
            view.mark_allocated(claim)
        return view

    def mark_allocated(self, claim: Mapping[str, Any]) -> None:
        """Count a claim's existing allocation as in use (admin access results excepted)."""
        for r in claim_results(claim):
            if r.get("adminAccess"):
                continue
            key = (r["driver"], r["pool"], r["device"])
            if r.get("shareID"):
                self.use_share(key, _amounts(r.get("consumedCapacity") or {}))
            else:
                self.use(key)

    def use_share(self, key: DeviceKey, amounts: Amounts) -> None:
        """One more share of a shareable device, taking ``amounts`` of its capacities."""
        self.share_count[key] += 1
        used = self.shares_used.setdefault(key, {})
        for name, amount in amounts.items():
            used[name] = used.get(name, ZERO) + amount
        dev = self.devices.get(key)
        if dev is not None and self.share_count[key] == 1:
            self._draw(dev, +1)

    def release_share(self, key: DeviceKey, amounts: Amounts) -> None:
        """Undo `use_share`."""
        if self.share_count[key] <= 0:
            return
        self.share_count[key] -= 1
        used = self.shares_used.setdefault(key, {})
        for name, amount in amounts.items():
            used[name] = used.get(name, ZERO) - amount
        dev = self.devices.get(key)
        if self.share_count[key] == 0:
            del self.share_count[key]
            self.shares_used.pop(key, None)
            if dev is not None:
                self._draw(dev, -1)

    def shared(self, key: DeviceKey) -> bool:
        """Some allocation holds a share of the device (its counters are drawn already)."""
        return self.share_count[key] > 0

    def _draw(self, dev: Device, sign: int) -> None:
        for counter_set, amounts in dev.consumes:
            used = self.counters_used.setdefault((dev.driver, dev.pool, counter_set), {})
            for name, amount in amounts.items():
                before = used.get(name, ZERO)
                used[name] = before + amount if sign > 0 else before - amount

    def use(self, key: DeviceKey) -> None:
        if key in self.in_use:
            return
        self.in_use.add(key)
        dev = self.devices.get(key)
        if dev is None:
            return
        self._used_local[self._home(dev)] += 1
        self._draw(dev, +1)

    def release(self, key: DeviceKey) -> None:
        if key not in self.in_use:
            return
        self.in_use.discard(key)
        dev = self.devices.get(key)
        if dev is None:
            return
        self._used_local[self._home(dev)] -= 1
        self._draw(dev, -1)

    def pools_for(self, node_name: str) -> list[Pool]:
        node = self.nodes.get(node_name, {"metadata": {"name": node_name}})
        out = []
        for p in self.pools:
            if p.node_name is not None:
                if p.node_name == node_name:
                    out.append(p)
            elif (
                p.all_nodes
                or selector_matches(p.node_selector, node)
                or any(d.node == node_name for d in p.devices)
            ):
                out.append(p)
        return out

    def devices_for(self, node_name: str) -> list[Device]:
        """Devices reachable from the node (cached: pools do not change during a decision)."""
        hit = self._node_devices.get(node_name)
        if hit is not None:
            return hit
        out = []
        for p in self.pools_for(node_name):
            for d in p.devices:
                if p.node_name is None and d.node is not None and d.node != node_name:
                    continue
                out.append(d)
        self._node_devices[node_name] = out
        return out

    def available_counters(self, dev: Device, counter_set: str) -> dict[str, Quantity]:
        if not self._pool_index:
            self._pool_index = {(p.driver, p.name): p for p in self.pools}
        total = self._pool_index[(dev.driver, dev.pool)].counters.get(counter_set, {})
        used = self.counters_used.get((dev.driver, dev.pool, counter_set), {})
        return {n: v - used.get(n, ZERO) for n, v in total.items()}

    def node_names(self) -> list[str]:
        names = set(self.nodes)
        names.update(p.node_name for p in self.pools if p.node_name)
        return sorted(names)

    def _home(self, dev: Device) -> str | None:
        """The node a node-local device belongs to (None for shared pools)."""
        if not self._pool_index:
            self._pool_index = {(p.driver, p.name): p for p in self.pools}
        return self._pool_index[(dev.driver, dev.pool)].node_name

    def in_use_count(self, node_name: str) -> int:
        """Devices reachable from the node that are in use (kept incrementally for
        node-local pools; shared pools are counted on demand)."""
        local = self._used_local[node_name]
        if node_name not in self._has_shared:
            self._has_shared[node_name] = any(
                p.node_name is None for p in self.pools_for(node_name)
            )
        if not self._has_shared[node_name]:
            return local
        return local + sum(
            1 for d in self.devices_for(node_name) if d.key in self.in_use and self._home(d) is None
        )


def _amounts(raw: Mapping[str, Any]) -> dict[str, Quantity]:
    """A result's ``consumedCapacity`` (a value that is no quantity counts as nothing: the
    API server validated it, so that would be a stored object from before validation)."""
    out = {}
    for name, value in raw.items():
        try:
            out[str(name)] = parse_quantity(str(value))
        except QuantityError:
            continue
    return out
