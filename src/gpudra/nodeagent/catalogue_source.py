"""A node daemon's current catalogue: rebuilt only when what it is built from changes.

``current()`` is a plain read: it builds (or returns the last build) and tells nobody; what
changed is announced by the GPU watch (``gpudra.nodeagent.watch``), never by a read.
The inputs are the inventory (read from NVML on every call: health and MIG instances
change), the GPUs' fault taints (``gpudra.nodeagent.faults.FaultTracker.taints``, itself a
pure read), the GPU-set settings
(served GPUs, modes, the shares of a shared GPU; fixed for the daemon's life) and the API
server's capabilities (its version, read once it answers; until then unknown).  The
catalogue (``gpudra.catalogue``) is rebuilt when the inventory or the capabilities differ
from the last build, and the same object is returned otherwise.  When the GPUs' modes
change, each GPU published otherwise than asked (dynamic MIG on a pre-1.35 server, shared
on a pre-1.36 server or in MIG mode) is logged as a warning that says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from gpudra.catalogue.catalogue import (
    CONSUMABLE_SINCE_MINOR,
    PARTITIONABLE_SINCE_MINOR,
    GpuMode,
    NodeCatalogue,
    ServerCapabilities,
    build_catalogue,
)
from gpudra.catalogue.gpuset import GpuSet
from gpudra.devices.inventory import Inventory
from gpudra.kube.errors import KubeError

log = logging.getLogger(__name__)


class CatalogueSource:
    def __init__(
        self,
        inventory: Callable[[], Inventory],
        server_version: Callable[[], tuple[int, int]] | None = None,
        *,
        dynamic_mig: GpuSet | None = None,
        managed: GpuSet | None = None,
        served: GpuSet | None = None,
        shared: GpuSet | None = None,
        shares: int = 0,
        taints: Callable[[Inventory, ServerCapabilities], Mapping[int, tuple[Any, ...]]]
        | None = None,
    ) -> None:
        self._inventory = inventory
        self._server_version = server_version
        self._dynamic_mig = dynamic_mig or GpuSet()
        self._managed = managed or GpuSet()
        self._served = served or GpuSet(every=True, text="all")
        self._shared = shared or GpuSet()
        self._shares = shares
        self._taints = taints or (lambda inv, caps: {})
        self._capabilities = ServerCapabilities()
        self._built: NodeCatalogue | None = None
        self._built_taints: dict[int, tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def capabilities(self) -> ServerCapabilities:
        """The server's capabilities; asks the server until it has answered once (never, for
        a daemon without one: the device plugin publishes nothing that depends on them)."""
        if not self._capabilities.known and self._server_version is not None:
            try:
                minor = self._server_version()[1]
            except KubeError as e:
                log.warning(
                    "cannot read the server version (%s); publishing as for 1.%d+ until it answers",
                    e,
                    PARTITIONABLE_SINCE_MINOR,
                )
            else:
                self._capabilities = ServerCapabilities(minor=minor)
        return self._capabilities

    def last(self) -> NodeCatalogue | None:
        """The catalogue of the last build, if any (when NVML does not answer now)."""
        with self._lock:
            return self._built

    def current(self) -> NodeCatalogue:
        """The catalogue of the node as it is now (NvmlError when NVML does not answer)."""
        inv = self._inventory()
        caps = self.capabilities()
        taints = dict(self._taints(inv, caps))
        with self._lock:
            last = self._built
            if (
                last is not None
                and last.inventory == inv
                and last.capabilities == caps
                and self._built_taints == taints
            ):
                return last
            n = len(inv.gpus)
            built = build_catalogue(
                inv,
                dynamic=self._dynamic_mig.resolve(n),
                managed=self._managed.resolve(n),
                capabilities=caps,
                served=self._served.resolve(n),
                taints=taints,
                shared=self._shared.resolve(n),
                shares=self._shares,
            )
            self._built, self._built_taints = built, taints
        if last is None or last.capabilities != caps or last.modes != built.modes:
            self._said(built)
        return built

    @staticmethod
    def _said(c: NodeCatalogue) -> None:
        modes = ", ".join(f"{g.index}:{c.mode(g)}" for g in c.inventory.gpus)
        log.info("GPU modes: %s", modes or "no GPUs")
        if c.dynamic_refused and c.capabilities.known:
            log.warning(
                "Kubernetes 1.%s: the partitionable-device layout dynamic MIG needs arrived "
                "in 1.%d; publishing static MIG only (existing instances) on GPU(s) %s",
                c.capabilities.minor,
                PARTITIONABLE_SINCE_MINOR,
                ",".join(str(i) for i in sorted(c.dynamic_refused)),
            )
        for i in sorted(c.shared_refused):
            log.warning("--shared-gpus: GPU %d is not shared: %s", i, _why_not_shared(c, i))


def _why_not_shared(c: NodeCatalogue, index: int) -> str:
    """Why a GPU in ``--shared-gpus`` is published as it would be without it."""
    mode = c.modes[index]
    if mode is GpuMode.DYNAMIC_MIG:
        return "it is in dynamic-MIG mode (--dynamic-mig-gpus), which wins; publishing MIG devices"
    if mode is GpuMode.STATIC_MIG:
        return "it is in MIG mode; publishing its MIG instances, one claim per instance"
    return (
        f"Kubernetes 1.{c.capabilities.minor} is older than 1.{CONSUMABLE_SINCE_MINOR} "
        "(consumable capacity is off there); publishing plain devices, one claim per GPU"
    )
