"""The device plugin's state and answers, without gRPC: what each resource advertises now,
Allocate and GetPreferredAllocation.

``refresh`` rebuilds the layout from the node catalogue and the health verdicts; every
resource's device list carries a version that moves whenever its IDs or their health change,
and ``wait_change`` is what a ListAndWatch stream blocks on.  Allocate writes the node's CDI
spec before it answers whenever the spec on disk is missing or differs from the layout's.
Thread-safe: the gRPC threads and the daemon's health threads call in concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from gpudra.catalogue.catalogue import NodeCatalogue
from gpudra.cdi.spec import CdiDevice, device_plugin_spec
from gpudra.cdi.writer import CdiWriter
from gpudra.deviceplugin.advertise import AdvertisedResource, Layout, layout
from gpudra.deviceplugin.allocate import ContainerAllocation, container_allocation
from gpudra.deviceplugin.options import Options
from gpudra.deviceplugin.preferred import distributed, preferred_gpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Advertised:
    """One ID as ListAndWatch sends it."""

    id: str
    healthy: bool
    numa_node: int | None


class DevicePluginService:
    def __init__(self, options: Options, *, cdi: CdiWriter, dev_root: str | None) -> None:
        self.options = options
        self._cdi = cdi
        self._dev_root = dev_root
        self._cond = threading.Condition()
        self._catalogue: NodeCatalogue | None = None
        self._layout = Layout(resources=())
        self._unhealthy: dict[int, str] = {}
        self._lists: dict[str, tuple[Advertised, ...]] = {}
        self._versions: dict[str, int] = {}
        self._spec_written: dict[str, object] | None = None
        self._closed = False

    # --- state ----------------------------------------------------------------------------

    def refresh(self, catalogue: NodeCatalogue, unhealthy: dict[int, str]) -> Layout:
        """Take the node as it is now; wakes the streams of every resource that changed."""
        new = layout(
            catalogue,
            resource_name=self.options.resource_name,
            mig_strategy=self.options.mig_strategy,
            time_slicing=self.options.time_slicing,
        )
        with self._cond:
            old_layout, old_bad = self._layout, self._unhealthy
            self._catalogue, self._layout, self._unhealthy = catalogue, new, dict(unhealthy)
            changed = False
            for r in new.resources:
                lst = tuple(
                    Advertised(d.id, d.gpu_index not in unhealthy, d.numa_node) for d in r.devices
                )
                if self._lists.get(r.name) != lst:
                    self._lists[r.name] = lst
                    self._versions[r.name] = self._versions.get(r.name, 0) + 1
                    changed = True
            for name in set(self._lists) - {r.name for r in new.resources}:
                self._lists[name] = ()  # a resource that vanished advertises nothing
                self._versions[name] += 1
                changed = True
            if changed:
                self._cond.notify_all()
        if new.problems != old_layout.problems:
            for p in new.problems:
                log.error("%s; advertising no devices for it", p)
        if new.notes != old_layout.notes:
            for n in new.notes:
                log.warning("%s", n)
        for index, why in sorted(unhealthy.items()):
            if old_bad.get(index) != why:
                log.warning("GPU %d is unhealthy: %s", index, why)
        for index in sorted(set(old_bad) - set(unhealthy)):
            log.info("GPU %d is healthy again", index)
        return new

    @property
    def layout(self) -> Layout:
        with self._cond:
            return self._layout

    def resource_names(self) -> list[str]:
        with self._cond:
            return [r.name for r in self._layout.resources]

    def advertised(self, resource: str) -> tuple[int, tuple[Advertised, ...]]:
        with self._cond:
            return self._versions.get(resource, 0), self._lists.get(resource, ())

    def wait_change(
        self, resource: str, seen: int, timeout: float
    ) -> tuple[int, tuple[Advertised, ...]] | None:
        """The list once its version is past ``seen``; None after ``timeout`` or on close."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._versions.get(resource, 0) != seen, timeout
            )
            if self._closed or self._versions.get(resource, 0) == seen:
                return None
            return self._versions[resource], self._lists.get(resource, ())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _resource(self, name: str) -> AdvertisedResource:
        r = self.layout.resource(name)
        if r is None:
            raise LookupError(f"this plugin does not advertise {name}")
        return r

    # --- the kubelet's calls ---------------------------------------------------------------

    def ensure_cdi_spec(self) -> None:
        """Write the node's CDI spec if the file is missing or not the layout's."""
        with self._cond:
            lay, cat = self._layout, self._catalogue
        devices: dict[str, CdiDevice] = {}
        for r in lay.resources:
            for d in r.devices:
                devices.setdefault(d.device, CdiDevice(d.device, d.uuid, d.device_nodes))
        spec = device_plugin_spec(list(devices.values()), self._dev_root)
        if cat is not None and self._cdi.device_plugin_spec() != spec:
            path = self._cdi.write_device_plugin_spec(spec)
            log.info("wrote CDI spec %s (%d devices)", path, len(devices))

    def allocate(
        self, resource: str, containers: Sequence[Sequence[str]]
    ) -> list[ContainerAllocation]:
        """One answer per container; AllocateError (NVIDIA's messages) for a bad request."""
        r = self._resource(resource)
        out = [
            container_allocation(r, ids, self.options, dev_root=self._dev_root)
            for ids in containers
        ]
        if "cdi-cri" in self.options.list_strategy:
            self.ensure_cdi_spec()  # the runtime reads it as soon as we answer
        return out

    def device_names(self, resource: str, ids: Sequence[str]) -> list[str]:
        """The catalogue names behind ``ids`` (for logs), an unknown ID as itself."""
        r = self.layout.resource(resource)
        by_id = {d.id: d for d in r.devices} if r else {}
        return [by_id[i].device if i in by_id else i for i in ids]

    def preferred(
        self, resource: str, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        r = self._resource(resource)
        with self._cond:
            cat = self._catalogue
        by_id = {d.id: d for d in r.devices}
        known = [i for i in available if i in by_id]
        if r.whole_gpus and cat is not None:
            index_of = {by_id[i].gpu_index: i for i in known}
            chosen = preferred_gpus(
                cat.inventory.topology,
                list(index_of),
                [by_id[i].gpu_index for i in must_include if i in by_id],
                size,
            )
            return [index_of[g] for g in chosen]
        parent = {i: by_id[i].uuid for i in known}
        return list(distributed(known, [i for i in must_include if i in by_id], size, parent))
