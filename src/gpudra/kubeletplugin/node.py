"""The node plugin's prepare/unprepare service: the thin IO shell around ``prepare``.

For each claim: read it from the API server (bounded by the RPC's deadline), plan (pure),
check exclusivity against the checkpoint, record the claim as *preparing* (dynamic-MIG
placements marked as ours only once seen free), create MIG instances (each UUID recorded at
once), start its MPS daemon if it asks for one (pid and start time recorded at once; a
live recorded daemon is adopted, never doubled), write its CDI spec, record it as
*prepared*.  A crash anywhere is repaired by the kubelet's retry; a failed prepare is
rolled back and leaves nothing that could later adopt an instance gpudra did not create.
Unprepare undoes the steps in reverse and destroys only instances gpudra created; garbage
collection does the same for claims gone from the API.
Claims are serialized per claim UID (not per node), and a failure is reported for that claim
only.

Metrics: each kubelet call is counted, timed and in flight around ``prepare``/``unprepare``
(what both the v1 and v1beta1 servicers call); each failed claim is counted by its
``ErrorType``; ``check_mps`` (the daemon's garbage-collection loop) restarts a prepared
claim's MPS daemon that died.  The devices prepared, by type, and the MPS daemons running
are set from the checkpoint after every call and garbage-collection pass and at start, so
they are right after a restart too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpudra.api.meta import RawObject
from gpudra.catalogue.catalogue import NodeCatalogue
from gpudra.cdi.writer import CdiWriteError, CdiWriter
from gpudra.common.logfmt import BoundLogger, bind
from gpudra.devices.gpu import MigDevice
from gpudra.kube.client import KubeClient
from gpudra.kube.errors import KubeError, NotFound
from gpudra.kube.resources import RESOURCECLAIMS
from gpudra.kubeletplugin.checkpoint_store import CheckpointError, CheckpointStore
from gpudra.kubeletplugin.crashpoints import crashpoint
from gpudra.kubeletplugin.exclusivity import exclusivity_conflicts
from gpudra.kubeletplugin.mig_ownership import claim_placements, own_instance
from gpudra.kubeletplugin.prepare import ClaimRef, check_uid, finish, resolve_claim
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.reporting import device_types, error_type
from gpudra.kubeletplugin.sharing.effects import SharingEffects
from gpudra.kubeletplugin.sharing.mps import MpsControl
from gpudra.metrics.node import PREPARE, UNPREPARE, NodeMetrics
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import DeviceNotFound, GpuLost, NvmlError

log = logging.getLogger(__name__)


def claim_log(ref: ClaimRef) -> BoundLogger:
    """The module's logger with the claim's fields: ``claim=ns/name``, ``claim_uid``."""
    return bind(log, claim=f"{ref.namespace}/{ref.name}", claim_uid=ref.uid)


# One claim read inside an RPC may take this long at most: well under the kubelet's 45 s
# deadline, so a hung API server gives the kubelet an error it can retry, not a timeout.
CLAIM_READ_TIMEOUT_S = 10.0
# what an RPC keeps back from its deadline to answer in time
_DEADLINE_MARGIN_S = 0.5


@dataclass(frozen=True)
class Budget:
    """How long the RPC serving a call may still take, and whether its caller gave up."""

    deadline: float | None = None  # time.monotonic() by which the answer must be sent
    cancelled: Callable[[], bool] = lambda: False

    def timeout(self, cap: float) -> float:
        """Seconds one blocking call may take; PrepareError when no time is left."""
        if self.cancelled():
            raise PrepareError("the kubelet cancelled the call", ErrorType.DEADLINE_EXCEEDED)
        if self.deadline is None:
            return cap
        left = self.deadline - time.monotonic() - _DEADLINE_MARGIN_S
        if left <= 0:
            raise PrepareError(
                "the call's deadline passed before this claim was served",
                ErrorType.DEADLINE_EXCEEDED,
            )
        return min(cap, left)


@dataclass(frozen=True)
class PrepareOutcome:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""
    error_type: ErrorType | None = None  # set with ``error``


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
        catalogue: Callable[[], NodeCatalogue],
        metrics: NodeMetrics | None = None,
        claim_read_timeout_s: float = CLAIM_READ_TIMEOUT_S,
        mps: MpsControl | None = None,
        mps_root: Path | None = None,
    ) -> None:
        """``mps`` and ``mps_root`` (``<plugin dir>/mps``, where each MPS claim's daemon gets
        ``<claim uid>/{pipe,log}``): without both, MPS configs are refused."""
        self._claim_read_timeout = claim_read_timeout_s
        self._mps_root = str(mps_root) if mps is not None and mps_root is not None else None
        self._sharing = SharingEffects(checkpoint, backend, mps)
        self._client = client
        self._backend = backend
        self.checkpoint = checkpoint
        self._cdi = cdi
        self._driver = driver
        self._node_name = node_name
        self._dev_root = dev_root
        self._catalogue = catalogue  # the node's current catalogue (reads NVML)
        self.metrics = metrics or NodeMetrics()
        self._locks = _Locks()
        self._device_guard = threading.Lock()
        self._count_guard = threading.Lock()
        self.metrics.serving(driver=driver, node=node_name)
        self._count_prepared()

    def _count_prepared(self) -> None:
        """Set the prepared-devices gauge from the checkpoint (read and set under one lock:
        a slower refresh never overwrites a newer one)."""
        with self._count_guard:
            claims = self.checkpoint.claims().values()
            counts = device_types(claims)
            self.metrics.prepared(driver=self._driver, node=self._node_name, counts=counts)
            self.metrics.mps_daemons.set(self._sharing.running_mps(claims))

    @contextmanager
    def _claim_lock(self, uid: str, *, wait: bool = True) -> Iterator[bool]:
        """Serialize work on one claim.  Yields whether the lock is held (always, unless
        ``wait`` is False and someone else holds it)."""
        with self._locks.guard:
            lock = self._locks.held.setdefault(uid, threading.Lock())
            self._locks.users[uid] = self._locks.users.get(uid, 0) + 1
        got = lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                lock.release()
            with self._locks.guard:
                self._locks.users[uid] -= 1
                if not self._locks.users[uid]:
                    del self._locks.users[uid], self._locks.held[uid]

    def prepare(self, refs: list[ClaimRef], budget: Budget = Budget()) -> dict[str, PrepareOutcome]:
        """One NodePrepareResources call: claim UID -> outcome."""
        with self.metrics.request(self._driver, PREPARE):
            try:
                out = {ref.uid: self.prepare_one(ref, budget) for ref in refs}
            finally:
                self._count_prepared()
        for outcome in out.values():
            self.metrics.claim("prepare", not outcome.error)
            if outcome.error_type is not None:
                self.metrics.claim_failed(self._driver, PREPARE, outcome.error_type)
        return out

    def prepare_one(self, ref: ClaimRef, budget: Budget = Budget()) -> PrepareOutcome:
        clog = claim_log(ref)
        clog.info("preparing %s", ref)
        with self._claim_lock(ref.uid):
            try:
                return PrepareOutcome(devices=self._prepare(ref, budget))
            except (PrepareError, CdiWriteError, CheckpointError, NvmlError) as e:
                clog.warning("prepare %s failed: %s", ref, e)
                return PrepareOutcome(error=str(e), error_type=error_type(e))
            except KubeError as e:
                clog.warning("prepare %s: API error: %s", ref, e)
                return PrepareOutcome(
                    error=f"reading claim {ref} failed: {e}", error_type=ErrorType.API_ERROR
                )
            except Exception as e:  # a bug must not fail the other claims of the RPC
                clog.exception("prepare %s: unexpected error", ref)
                return PrepareOutcome(
                    error=f"internal error preparing {ref}: {e}", error_type=ErrorType.INTERNAL
                )

    def _read_claim(self, ref: ClaimRef, budget: Budget) -> RawObject:
        try:
            return self._client.get(
                RESOURCECLAIMS,
                ref.name,
                namespace=ref.namespace,
                timeout=budget.timeout(self._claim_read_timeout),
            )
        except NotFound as e:
            raise PrepareError(
                f"claim {ref} does not exist (deleted?)", ErrorType.CLAIM_NOT_FOUND
            ) from e

    def _prepare(self, ref: ClaimRef, budget: Budget) -> tuple[PreparedDevice, ...]:
        check_uid(ref.uid)
        done = self.checkpoint.get(ref.uid)
        if done is not None and done.state == "prepared":
            if self._cdi.path(ref.uid).exists():
                return done.devices
            # never a silent success: the kubelet would hand the runtime CDI ids that resolve
            # to nothing and the container would not start
            log.warning("%s is prepared but its CDI spec is missing; preparing it again", ref)
        claim = self._read_claim(ref, budget)
        catalogue = self._catalogue()
        wanted = resolve_claim(
            claim,
            ref,
            driver=self._driver,
            node_name=self._node_name,
            catalogue=catalogue,
            mps_root=self._mps_root,
        )
        with self._device_guard:  # the check and the record must not interleave across claims
            conflicts = exclusivity_conflicts(wanted, self.checkpoint.claims().values())
            if conflicts:
                raise PrepareError("; ".join(conflicts), ErrorType.DEVICE_BUSY)
            devices = claim_placements(wanted.devices, done, catalogue.inventory.mig_devices)
            # recorded before any side effect: a crash from here on is repaired by a retry,
            # which adopts exactly the instances this record marks as ours
            # (and the MPS daemon an earlier attempt started, to adopt while it runs)
            mps_process = done.mps_process if done is not None and wanted.mps else None
            record = wanted.model_copy(update={"devices": devices, "mps_process": mps_process})
            self.checkpoint.put(record)
        crashpoint("prepare:preparing-recorded")
        made: list[str] = []
        started: list[PreparedClaim] = []
        try:
            record, instances = self._create_migs(record, made)
            self._sharing.set_time_slices(record)
            record = self._sharing.start_mps(record, started)
            final = finish(record, instances, catalogue=catalogue, dev_root=self._dev_root)
            self._cdi.write(ref.uid, final.cdi_spec)
            crashpoint("prepare:cdi-written")
            self.checkpoint.put(final.claim)
        except BaseException:
            self._sharing.undo(record, started)
            self._roll_back(ref, done, made)
            raise
        crashpoint("prepare:prepared-recorded")
        names = ", ".join(d.device for d in final.claim.devices)
        claim_log(ref).info("prepared %s: %s", ref, names)
        return final.claim.devices

    def check_mps(self) -> list[PreparedClaim]:
        """Restart the recorded MPS daemon of each prepared claim whose daemon died (a claim
        being prepared or unprepared right now is left to that call).  Returns the claims
        whose daemon was restarted."""
        restarted = []
        try:
            for held in self.checkpoint.claims().values():
                if held.mps is None or held.state != "prepared":
                    continue
                with self._claim_lock(held.uid, wait=False) as got:
                    current = self.checkpoint.get(held.uid) if got else None
                    if current is None or current.mps is None or current.state != "prepared":
                        continue
                    try:
                        again = self._sharing.restart_mps(current)
                    except PrepareError as e:
                        log.warning("restarting the MPS daemon of %s failed: %s", held.uid, e)
                        continue
                    if again is not None:
                        restarted.append(again)
        finally:
            self._count_prepared()
        return restarted

    def _create_migs(
        self, record: PreparedClaim, made: list[str]
    ) -> tuple[PreparedClaim, dict[str, MigDevice]]:
        """The instances behind the claim's dynamic-MIG devices: adopted ones looked up by
        their UUID, missing ones created, each new UUID checkpointed at once (``made`` lists
        the devices created by this attempt, for a roll-back)."""
        instances: dict[str, MigDevice] = {}
        if not any(d.dynamic_mig for d in record.devices):
            return record, instances
        existing = self._backend.inventory().mig_devices
        for d in record.devices:
            if not d.dynamic_mig:
                continue
            found = own_instance(d, existing) if d.uuid else None
            if d.uuid and found is None:
                raise PrepareError(
                    f"MIG instance {d.uuid} of {d.device} disappeared while being prepared",
                    ErrorType.MIG_ERROR,
                )
            if found is None:
                try:
                    found = self._backend.create_mig_device(
                        d.mig_parent, d.mig_profile, d.mig_start
                    )
                except NvmlError as e:
                    raise PrepareError(str(e), ErrorType.MIG_ERROR) from e
                made.append(d.device)
                crashpoint("prepare:mig-created")
                log.info(
                    "created MIG %s %s at %d: %s",
                    d.mig_parent,
                    d.mig_profile,
                    d.mig_start,
                    found.uuid,
                )
                record = _with_uuid(record, d.device, found.uuid)
                self.checkpoint.put(record)
                crashpoint("prepare:mig-recorded")
            instances[d.device] = found
        return record, instances

    def _roll_back(self, ref: ClaimRef, previous: PreparedClaim | None, made: list[str]) -> None:
        """After a failed prepare: destroy the instances this attempt created, and leave no
        record that could later authorize adopting an instance (none at all for a claim
        that had none)."""
        try:
            record = self.checkpoint.get(ref.uid)
            if record is None:
                return
            existing = self._backend.inventory().mig_devices if made else ()
            for name in made:
                d = next(x for x in record.devices if x.device == name)
                inst = own_instance(d, existing)
                if inst is not None:
                    self._backend.destroy_mig_device(inst.uuid)
                    log.info("rolled back MIG %s of %s", inst.uuid, ref)
                record = _with_uuid(record, name, "", owned=False)
            if previous is None and not any(d.ours for d in record.devices):
                with contextlib.suppress(CdiWriteError):  # written only if the last step failed
                    self._cdi.remove(ref.uid)
                self.checkpoint.remove(ref.uid)
            else:
                self.checkpoint.put(record.model_copy(update={"state": "preparing"}))
        except Exception as e:  # the prepare's own error is what the kubelet must see
            log.warning(
                "rolling back the failed prepare of %s failed (%s); unprepare or garbage "
                "collection releases what is left",
                ref,
                e,
            )

    def _release(self, held: PreparedClaim) -> None:
        """Undo a claim's side effects, the reverse of prepare: its MIG instances (only those
        gpudra created), its CDI spec, its checkpoint entry."""
        if any(d.ours for d in held.devices):
            existing = self._backend.inventory().mig_devices
            for d in held.devices:
                match = own_instance(d, existing)
                if match is None:
                    continue
                try:
                    self._backend.destroy_mig_device(match.uuid)
                except DeviceNotFound:
                    pass
                except GpuLost as e:  # the instance went with its GPU (a reset clears it)
                    log.warning("MIG %s (%s) is on a lost GPU: %s", match.uuid, d.device, e)
                    continue
                except NvmlError as e:  # e.g. InUse: processes still run on it
                    raise PrepareError(str(e), ErrorType.MIG_ERROR) from e
                log.info("destroyed MIG %s (%s)", match.uuid, d.device)
                crashpoint("unprepare:mig-destroyed")
        self._sharing.restore_time_slices(held)
        self._sharing.stop_mps(held)
        self._cdi.remove(held.uid)
        crashpoint("unprepare:cdi-removed")
        self.checkpoint.remove(held.uid)
        crashpoint("unprepare:entry-removed")

    def unprepare(self, refs: list[ClaimRef]) -> dict[str, str]:
        """One NodeUnprepareResources call: claim UID -> error ('' on success).  Unknown
        claims succeed (idempotent)."""
        with self.metrics.request(self._driver, UNPREPARE):
            try:
                out = {ref.uid: self._unprepare_one(ref) for ref in refs}
            finally:
                self._count_prepared()
        return out

    def _unprepare_one(self, ref: ClaimRef) -> str:
        with self._claim_lock(ref.uid):
            try:
                check_uid(ref.uid)
                held = self.checkpoint.get(ref.uid)
                if held is not None:
                    self._release(held)
                else:
                    self._cdi.remove(ref.uid)
            except Exception as e:  # a bug must not fail the other claims of the RPC either
                kind = error_type(e)
                if kind is ErrorType.INTERNAL:
                    claim_log(ref).exception("unprepare %s: unexpected error", ref)
                    error = f"internal error unpreparing {ref}: {e}"
                else:
                    claim_log(ref).warning("unprepare %s failed: %s", ref, e)
                    error = str(e)
                self.metrics.claim("unprepare", False)
                self.metrics.claim_failed(self._driver, UNPREPARE, kind)
                return error
        self.metrics.claim("unprepare", True)
        claim_log(ref).info("unprepared %s", ref)
        return ""

    def collect_garbage(self, budget: Budget = Budget()) -> list[PreparedClaim]:
        """Release checkpointed claims whose ResourceClaim is gone from the API (deleted, or
        deleted and recreated under a new UID) and whose unprepare will never come.  A claim
        being prepared or unprepared right now is left alone; an API error ends the pass
        (only an answer from the server proves a claim gone).  Returns the released claims."""
        try:
            return self._collect_garbage(budget)
        finally:
            self._count_prepared()

    def _collect_garbage(self, budget: Budget) -> list[PreparedClaim]:
        released = []
        for held in self.checkpoint.claims().values():
            with self._claim_lock(held.uid, wait=False) as got:
                if not got:
                    continue
                current = self.checkpoint.get(held.uid)
                if current is None:
                    continue
                try:
                    obj = self._client.get(
                        RESOURCECLAIMS,
                        held.name,
                        namespace=held.namespace,
                        timeout=budget.timeout(self._claim_read_timeout),
                    )
                    gone = (obj.get("metadata") or {}).get("uid") != held.uid
                except NotFound:
                    gone = True
                except (KubeError, PrepareError) as e:
                    log.info("checkpoint garbage collection paused: %s", e)
                    break
                if not gone:
                    continue
                try:
                    self._release(current)
                except (PrepareError, CdiWriteError, CheckpointError, NvmlError) as e:
                    log.warning(
                        "releasing %s/%s (%s) failed: %s", held.namespace, held.name, held.uid, e
                    )
                    continue
                log.warning(
                    "released %s/%s (%s): its ResourceClaim no longer exists and the kubelet "
                    "never unprepared it",
                    held.namespace,
                    held.name,
                    held.uid,
                )
                released.append(current)
        return released


def _with_uuid(
    record: PreparedClaim, device: str, uuid: str, *, owned: bool = True
) -> PreparedClaim:
    devices = tuple(
        d.model_copy(update={"uuid": uuid, "mig_owned": owned}) if d.device == device else d
        for d in record.devices
    )
    return record.model_copy(update={"devices": devices})
