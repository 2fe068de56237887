"""The side effects of a claim's sharing config: time slices set on GPUs, a claim's MPS
control daemon started, adopted, restarted and stopped.

``NodePlugin`` decides when (in prepare, unprepare, a failed attempt, the garbage-collection
loop) and holds the claim's lock; this module does the work and records it in the
checkpoint: a time slice is in the claim's device records before it is set (so unprepare
knows what to undo), a daemon's pid and start time are checkpointed the moment it runs (so
a restarted node daemon adopts it instead of starting a second).

A shared daemon (the one MPS daemon of a GPU whose shares several claims hold: every plan
with the same ``pipe_dir``) is one process for all of them, so its life cycle is decided
under a lock per pipe dir, from the checkpoint rather than from the one claim: the first
claim starts it and every other adopts it (a live daemon recorded by another claim, or the
one found in the pipe dir); a claim's unprepare, or a failed prepare's undo, stops it and
removes its dirs only when no other claim (of any state) holds a plan with that pipe dir,
else it just clears its own record; a dead one is started once, the other claims adopt the
new one when their check comes.  The metric counts daemons, not the claims using them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from gpudra.devices.timeslice import Interval
from gpudra.kubeletplugin.checkpoint_store import CheckpointError, CheckpointStore
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.sharing.mps import MpsControl, MpsError
from gpudra.kubeletplugin.sharing.mps_plan import with_mps_uuids
from gpudra.nodestate.checkpoint import MpsPlan, MpsProcess, PreparedClaim
from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import GpuLost, NvmlError

log = logging.getLogger(__name__)


class SharingEffects:
    def __init__(
        self, checkpoint: CheckpointStore, backend: GpuBackend, mps: MpsControl | None
    ) -> None:
        self._checkpoint = checkpoint
        self._backend = backend
        self._mps = mps
        self._guard = threading.Lock()
        self._pipes: dict[str, threading.Lock] = {}  # shared pipe dir -> its lock (per GPU)

    # --- time slices ---------------------------------------------------------------------

    def set_time_slices(self, record: PreparedClaim) -> None:
        """The intervals the claim's TimeSlicing configs ask for, on their GPUs (again on a
        retried prepare: setting one is idempotent)."""
        for d in record.devices:
            if d.time_slice:
                self._backend.set_time_slice(d.uuid, Interval(d.time_slice))
                log.info("time slice of %s (%s) set to %s", d.device, d.uuid, d.time_slice)

    def restore_time_slices(self, held: PreparedClaim) -> None:
        """The driver's default interval back on the claim's GPUs, unless another prepared
        claim still asks for one there (shared devices)."""
        others = {
            d.uuid
            for c in self._checkpoint.claims().values()
            if c.uid != held.uid
            for d in c.devices
            if d.time_slice
        }
        for d in held.devices:
            if not d.time_slice or d.uuid in others:
                continue
            try:
                self._backend.set_time_slice(d.uuid, Interval.DEFAULT)
            except GpuLost as e:  # a reset restores the default anyway
                log.warning("time slice of %s not restored, its GPU is lost: %s", d.device, e)
                continue
            log.info("time slice of %s (%s) back to Default", d.device, d.uuid)

    # --- MPS -----------------------------------------------------------------------------

    @contextmanager
    def _daemon_lock(self, plan: MpsPlan) -> Iterator[None]:
        """Serialize the life cycle of a shared daemon (a claim's own daemon is serialized by
        the claim's lock already)."""
        if not plan.shared:
            yield
            return
        with self._guard:
            lock = self._pipes.setdefault(plan.pipe_dir, threading.Lock())
        with lock:
            yield

    def _users(self, plan: MpsPlan, uid: str) -> list[PreparedClaim]:
        """The other claims whose plan uses the same shared daemon."""
        if not plan.shared:
            return []
        return [
            c
            for c in self._checkpoint.claims().values()
            if c.uid != uid and c.mps is not None and c.mps.pipe_dir == plan.pipe_dir
        ]

    def _live(self, mps: MpsControl, plan: MpsPlan, uid: str) -> MpsProcess | None:
        """A live shared daemon another claim recorded, else the one in the pipe dir."""
        for c in self._users(plan, uid):
            if c.mps_process is not None and mps.alive(c.mps_process):
                return c.mps_process
        return mps.running(plan)

    def start_mps(self, record: PreparedClaim, started: list[PreparedClaim]) -> PreparedClaim:
        """The claim's MPS daemon: the recorded one adopted while it runs (a retried prepare,
        a restarted node daemon), else one running already (started by an attempt that died
        before recording it, or a shared daemon another claim uses), else a new one, its pid
        and start time checkpointed at once (``started``: the record of a daemon this attempt
        started, for a roll-back)."""
        record = with_mps_uuids(record)
        plan, mps = record.mps, self._mps
        if plan is None or mps is None:
            return record
        with self._daemon_lock(plan):
            if record.mps_process is not None and mps.alive(record.mps_process):
                log.info("adopted MPS daemon %d of %s", record.mps_process.pid, record.name)
                return record
            found = self._live(mps, plan, record.uid) if plan.shared else mps.running(plan)
            if found is not None:
                log.info("adopted running MPS daemon %d for %s", found.pid, record.name)
                record = record.model_copy(update={"mps_process": found})
                self._checkpoint.put(record)
                return record
            try:
                proc = mps.start(plan)
            except MpsError as e:
                raise PrepareError(str(e), ErrorType.MPS_ERROR) from e
            record = record.model_copy(update={"mps_process": proc})
            started.append(record)
            self._checkpoint.put(record)
            return record

    def stop_mps(self, held: PreparedClaim) -> None:
        """Stop a claim's MPS daemon (gone already is fine) and remove its dirs; a shared
        daemon only when no other claim holds it (else only this claim's record goes)."""
        plan, mps = held.mps, self._mps
        if plan is None or mps is None:
            return
        with self._daemon_lock(plan):
            if not self._users(plan, held.uid):
                proc = held.mps_process
                if plan.shared and not (proc is not None and mps.alive(proc)):
                    proc = mps.running(plan) or proc  # restarted for a claim since gone
                try:
                    mps.stop(plan, proc)
                except MpsError as e:
                    raise PrepareError(str(e), ErrorType.MPS_ERROR) from e
            else:
                log.info("MPS daemon of %s kept: other claims use it", plan.pipe_dir)
            current = self._checkpoint.get(held.uid)
            if current is not None and current.mps_process is not None:
                self._checkpoint.put(current.model_copy(update={"mps_process": None}))

    def restart_mps(self, current: PreparedClaim) -> PreparedClaim | None:
        """A prepared claim's daemon again if it died (the caller holds the claim's lock): a
        shared one started by the first of its claims checked, adopted by the others; None
        when it runs (or the claim has none)."""
        proc = current.mps_process
        if self._mps is None or current.mps is None or (proc and self._mps.alive(proc)):
            return None
        log.warning(
            "the MPS daemon of %s/%s died; restarting or adopting it",
            current.namespace,
            current.name,
        )
        return self.start_mps(current, [])

    def running_mps(self, claims: Iterable[PreparedClaim]) -> int:
        """The live daemons (a shared one counts once, however many claims use it)."""
        mps = self._mps
        if mps is None:
            return 0
        procs = {c.mps_process for c in claims if c.mps_process is not None}
        return sum(1 for p in procs if mps.alive(p))

    def undo(self, record: PreparedClaim, started: list[PreparedClaim]) -> None:
        """A failed prepare attempt: its interval and the daemon it started go with it; a
        shared daemon goes only if no other claim holds it (whoever started it: an attempt
        that adopted one must not leave it behind with no claim)."""
        with contextlib.suppress(NvmlError):
            self.restore_time_slices(record)
        own = started or ([record] if record.mps is not None and record.mps.shared else [])
        for attempt in own:
            try:
                self.stop_mps(attempt)
            except (PrepareError, CheckpointError) as e:
                log.warning("stopping the MPS daemon of failed %s failed: %s", record.uid, e)
