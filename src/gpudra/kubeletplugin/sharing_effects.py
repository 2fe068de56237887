"""The side effects of a claim's sharing config: time slices set on GPUs, a claim's MPS
control daemon started, adopted, restarted and stopped.

``NodePlugin`` decides when (in prepare, unprepare, a failed attempt, the garbage-collection
loop) and holds the claim's lock; this module does the work and records it in the
checkpoint: a time slice is in the claim's device records before it is set (so unprepare
knows what to undo), a daemon's pid and start time are checkpointed the moment it runs (so
a restarted node daemon adopts it instead of starting a second).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from gpudra.devices.timeslice import Interval
from gpudra.kubeletplugin.checkpoint import CheckpointError, CheckpointStore, PreparedClaim
from gpudra.kubeletplugin.mps import MpsControl, MpsError
from gpudra.kubeletplugin.prepare import ErrorType, PrepareError, with_mps_uuids
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

    def start_mps(self, record: PreparedClaim, started: list[PreparedClaim]) -> PreparedClaim:
        """The claim's MPS daemon: the recorded one adopted while it runs (a retried prepare,
        a restarted node daemon), else a new one, its pid and start time checkpointed at once
        (``started``: the record of a daemon this attempt started, for a roll-back)."""
        record = with_mps_uuids(record)
        plan, mps = record.mps, self._mps
        if plan is None or mps is None:
            return record
        if record.mps_process is not None and mps.alive(record.mps_process):
            log.info("adopted MPS daemon %d of %s", record.mps_process.pid, record.name)
            return record
        found = mps.running(plan)  # started by an attempt that died before recording it
        if found is not None:
            log.info("adopted unrecorded MPS daemon %d of %s", found.pid, record.name)
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
        """Stop a claim's MPS daemon (gone already is fine) and remove its dirs."""
        if held.mps is None or self._mps is None:
            return
        try:
            self._mps.stop(held.mps, held.mps_process)
        except MpsError as e:
            raise PrepareError(str(e), ErrorType.MPS_ERROR) from e
        current = self._checkpoint.get(held.uid)
        if current is not None and current.mps_process is not None:
            self._checkpoint.put(current.model_copy(update={"mps_process": None}))

    def restart_mps(self, current: PreparedClaim) -> PreparedClaim | None:
        """A prepared claim's daemon again if it died (the caller holds the claim's lock);
        None when it runs (or the claim has none)."""
        proc = current.mps_process
        if self._mps is None or current.mps is None or (proc and self._mps.alive(proc)):
            return None
        log.warning("the MPS daemon of %s/%s died; restarting it", current.namespace, current.name)
        return self.start_mps(current, [])

    def running_mps(self, claims: Iterable[PreparedClaim]) -> int:
        mps = self._mps
        return sum(
            1 for c in claims if c.mps_process and mps is not None and mps.alive(c.mps_process)
        )

    def undo(self, record: PreparedClaim, started: list[PreparedClaim]) -> None:
        """A failed prepare attempt: its interval and the daemon it started go with it."""
        with contextlib.suppress(NvmlError):
            self.restore_time_slices(record)
        for own in started:
            try:
                self.stop_mps(own)
            except (PrepareError, CheckpointError) as e:
                log.warning("stopping the MPS daemon of failed %s failed: %s", record.uid, e)
