"""The node plugin's prepare/unprepare service: the thin IO shell around ``prepare``.

For each claim: read it from the API server, plan (pure), check exclusivity against the
checkpoint, record the claim as *preparing*, write its CDI spec, record it as *prepared*.
Every step is idempotent, so a crash anywhere is repaired by the kubelet's retry.  Claims
are serialized per claim UID (not per node), and a failure is reported for that claim only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gpudra.cdi.writer import CdiWriteError, CdiWriter
from gpudra.devices.gpu import MigDevice
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import KubeError, NotFound
from gpudra.kube.resources import RESOURCECLAIMS
from gpudra.kubeletplugin.checkpoint import CheckpointError, CheckpointStore, PreparedDevice
from gpudra.kubeletplugin.prepare import (
    ClaimRef,
    PrepareError,
    exclusivity_conflicts,
    finalize,
    node_devices,
    plan_claim,
)
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import NotFound as NvmlNotFound
from gpudra.nvml.errors import NvmlError

log = logging.getLogger(__name__)


def instance_of(device: PreparedDevice, existing: Iterable[MigDevice]) -> MigDevice | None:
    """The MIG instance behind a prepared MIG device: by UUID once known, else by placement."""
    return next(
        (
            m
            for m in existing
            if (device.uuid and m.uuid == device.uuid)
            or (
                m.parent_uuid == device.mig_parent
                and m.profile == device.mig_profile
                and m.placement_start == device.mig_start
            )
        ),
        None,
    )


@dataclass(frozen=True)
class PrepareOutcome:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass
class _Locks:
    guard: threading.Lock = field(default_factory=threading.Lock)
    held: dict[str, threading.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)


class NodePlugin:
    def __init__(
        self,
        *,
        client: KubeClient,
        backend: GpuBackend,
        checkpoint: CheckpointStore,
        cdi: CdiWriter,
        driver: str,
        node_name: str,
        dev_root: str | None,
        dynamic_mig: frozenset[int] = frozenset(),
        on_result: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._client = client
        self._backend = backend
        self.checkpoint = checkpoint
        self._cdi = cdi
        self._driver = driver
        self._node = node_name
        self._dev_root = dev_root
        self._dynamic = dynamic_mig
        self._on_result = on_result or (lambda operation, ok: None)
        self._locks = _Locks()
        self._device_guard = threading.Lock()

    @contextmanager
    def _claim_lock(self, uid: str) -> Iterator[None]:
        with self._locks.guard:
            lock = self._locks.held.setdefault(uid, threading.Lock())
            self._locks.users[uid] = self._locks.users.get(uid, 0) + 1
        try:
            with lock:
                yield
        finally:
            with self._locks.guard:
                self._locks.users[uid] -= 1
                if not self._locks.users[uid]:
                    del self._locks.users[uid], self._locks.held[uid]

    def prepare(self, refs: list[ClaimRef]) -> dict[str, PrepareOutcome]:
        out = {ref.uid: self.prepare_one(ref) for ref in refs}
        for outcome in out.values():
            self._on_result("prepare", not outcome.error)
        return out

    def prepare_one(self, ref: ClaimRef) -> PrepareOutcome:
        log.info("preparing %s", ref)
        with self._claim_lock(ref.uid):
            try:
                return PrepareOutcome(devices=self._prepare(ref))
            except (PrepareError, CdiWriteError, CheckpointError, NvmlError) as e:
                log.warning("prepare %s failed: %s", ref, e)
                return PrepareOutcome(error=str(e))
            except KubeError as e:
                log.warning("prepare %s: API error: %s", ref, e)
                return PrepareOutcome(error=f"reading claim {ref} failed: {e}")
            except Exception as e:  # a bug must not fail the other claims of the RPC
                log.exception("prepare %s: unexpected error", ref)
                return PrepareOutcome(error=f"internal error preparing {ref}: {e}")

    def _prepare(self, ref: ClaimRef) -> tuple[PreparedDevice, ...]:
        done = self.checkpoint.get(ref.uid)
        if done is not None and done.state == "prepared":
            if self._cdi.path(ref.uid).exists():
                return done.devices
            # never a silent success: the kubelet would hand the runtime CDI ids that resolve
            # to nothing and the container would not start
            log.warning("%s is prepared but its CDI spec is missing; preparing it again", ref)
        try:
            claim = self._client.get(RESOURCECLAIMS, ref.name, namespace=ref.namespace)
        except NotFound as e:
            raise PrepareError(f"claim {ref} does not exist (deleted?)") from e
        inventory = self._backend.inventory()
        plan = plan_claim(
            claim,
            ref,
            driver=self._driver,
            node_name=self._node,
            inventory=inventory,
            dev_root=self._dev_root,
            dynamic=self._dynamic,
        )
        resuming = done is not None  # a previous attempt recorded "preparing" and stopped
        with self._device_guard:  # the check and the record must not interleave across claims
            conflicts = exclusivity_conflicts(plan.claim, self.checkpoint.claims().values())
            if conflicts:
                raise PrepareError("; ".join(conflicts))
            # recorded before any side effect: a crash from here on is repaired by a retry
            # (an instance created before the crash is adopted, see _create_migs)
            self.checkpoint.put(plan.claim.model_copy(update={"state": "preparing"}))
        created = self._create_migs(plan.claim.devices, adopt=resuming)
        if created:
            known = node_devices(inventory, self._dynamic)
            plan = finalize(plan.claim, created, known=known, dev_root=self._dev_root)
        self._cdi.write(ref.uid, plan.spec)
        self.checkpoint.put(plan.claim)
        log.info("prepared %s: %s", ref, ", ".join(d.device for d in plan.claim.devices))
        return plan.claim.devices

    def _create_migs(
        self, devices: tuple[PreparedDevice, ...], *, adopt: bool
    ) -> dict[str, MigDevice]:
        """Create the MIG instances of dynamic-MIG devices.  With ``adopt`` (this claim was
        being prepared when the daemon stopped) an instance already at exactly that placement
        is ours; otherwise it belongs to someone else and the claim cannot be prepared."""
        created: dict[str, MigDevice] = {}
        wanted = [d for d in devices if d.mig_profile and not d.uuid]
        if not wanted:
            return created
        existing = self._backend.inventory().mig_devices
        for d in wanted:
            found = instance_of(d, existing)
            if found is not None and not adopt:
                raise PrepareError(
                    f"MIG placement {d.mig_profile} at memory slice {d.mig_start} on GPU "
                    f"{d.mig_parent} is taken by instance {found.uuid}, which gpudra did not "
                    "create (an external instance)"
                )
            if found is None:
                found = self._backend.create_mig_device(d.mig_parent, d.mig_profile, d.mig_start)
                log.info(
                    "created MIG %s %s at %d: %s",
                    d.mig_parent,
                    d.mig_profile,
                    d.mig_start,
                    found.uuid,
                )
            created[d.device] = found
        return created

    def _destroy_migs(self, devices: tuple[PreparedDevice, ...]) -> None:
        existing = self._backend.inventory().mig_devices
        for d in devices:
            if not d.mig_profile:
                continue
            match = instance_of(d, existing)
            if match is not None:
                with contextlib.suppress(NvmlNotFound):
                    self._backend.destroy_mig_device(match.uuid)
                log.info("destroyed MIG %s (%s)", match.uuid, d.device)

    def unprepare(self, refs: list[ClaimRef]) -> dict[str, str]:
        """Claim UID -> error ('' on success).  Unknown claims succeed (idempotent)."""
        out = {}
        for ref in refs:
            with self._claim_lock(ref.uid):
                try:
                    held = self.checkpoint.get(ref.uid)
                    if held is not None:
                        self._destroy_migs(held.devices)
                    self._cdi.remove(ref.uid)
                    self.checkpoint.remove(ref.uid)
                    out[ref.uid] = ""
                    self._on_result("unprepare", True)
                    log.info("unprepared %s", ref)
                except (CdiWriteError, CheckpointError, NvmlError) as e:
                    log.warning("unprepare %s failed: %s", ref, e)
                    self._on_result("unprepare", False)
                    out[ref.uid] = str(e)
        return out
