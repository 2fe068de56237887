"""The mock GPU backend: a machine profile's node, behaving like NVML.

MIG create/destroy follows NVML's rules and error classes (MIG mode required, placements
checked against the MIG profile table and existing instances, a lost GPU refuses everything
with GpuLost, a MIG instance with processes refuses destroy with InUse), a GPU's CUDA time
slice is kept in the state file, so every process on the node reads what one set (refused,
as the real backend refuses it, on a MIG device or a GPU in MIG mode; unreadable, None, on
a lost GPU; back to the default when the GPU recovers), and faults can be
injected (``gpudra.nvml.mock.faults``, also ``gpudra mock inject``): an XID or ECC event, a
GPU falling off the bus and its recovery, hung NVML calls, processes running on a MIG
instance, and NVML's GPU recovery action.  That action is read as the real backend reads it:
with each XID event as it is taken off the queue, and by ``recovery_action``; a GPU never
given one reads as a driver without the field (None), as before the field existed.
"""

from __future__ import annotations

import time
from pathlib import Path

from gpudra.devices.faults import RecoveryAction
from gpudra.devices.gpu import Gpu, Health, MigDevice, MigMode
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MigInstance, Placement, family_named, placement_violation
from gpudra.devices.timeslice import Interval
from gpudra.nvml.backend import HealthEvent, HealthEventKind
from gpudra.nvml.errors import (
    DeviceNotFound,
    GpuLost,
    InsufficientResources,
    InUse,
    InvalidArgument,
    NotSupported,
)
from gpudra.nvml.mock.faults import inject
from gpudra.nvml.mock.hardware import build_gpus, build_topology, mig_uuid
from gpudra.nvml.mock.profile import MachineProfile
from gpudra.nvml.mock.state import MigRecord, MockState, PendingEvent, StateStore

_POLL_S = 0.05


class MockBackend:
    """Implements ``GpuBackend`` for one mock node."""

    def __init__(
        self,
        machine: MachineProfile,
        *,
        node_name: str,
        state_file: Path | None = None,
        clique_id: str | None = None,
    ) -> None:
        self.machine = machine
        self.node_name = node_name
        self._gpus = build_gpus(machine, node_name)
        self._topology = build_topology(machine, clique_id)
        self._store = StateStore(state_file)

    # --- GpuBackend -------------------------------------------------------------------

    def inventory(self) -> Inventory:
        state = self._store.read()
        if state.hang_seconds > 0:
            time.sleep(state.hang_seconds)
        gpus = [
            g.model_copy(update={"health": Health.LOST})  # time slice unreadable: None
            if g.index in state.lost
            else g.model_copy(
                update={"time_slice": state.time_slices.get(g.index, Interval.DEFAULT)}
            )
            for g in self._gpus
        ]
        return Inventory(
            node_name=self.node_name,
            driver_version=self.machine.driver_version,
            cuda_driver_version=self.machine.cuda_driver_version,
            gpus=tuple(gpus),
            mig_devices=tuple(self._to_device(r) for r in state.mig),
            topology=self._topology,
        )

    def create_mig_device(self, gpu_uuid: str, profile: str, start: int) -> MigDevice:
        gpu = self._gpu(gpu_uuid)
        if gpu.mig_mode is MigMode.UNSUPPORTED or gpu.mig_family is None:
            raise NotSupported(f"GPU {gpu.index} ({gpu.product_name}) does not support MIG")
        if gpu.mig_mode is MigMode.DISABLED:
            raise NotSupported(f"MIG mode is disabled on GPU {gpu.index} ({gpu.uuid})")
        family = family_named(gpu.mig_family)
        prof = family.profile(profile)
        if prof is None:
            raise InvalidArgument(
                f"GPU {gpu.index} ({family.name}) has no MIG profile {profile!r}; "
                f"supported: {', '.join(family.profile_names())}"
            )

        def change(state: MockState) -> tuple[MockState, MigRecord]:
            self._check_alive(state, gpu)
            mine = [r for r in state.mig if r.parent_index == gpu.index]
            existing = [
                MigInstance(
                    profile=family.profile(r.profile) or prof,
                    placement=Placement(start=r.start, size=r.size),
                )
                for r in mine
            ]
            why = placement_violation(existing, prof, start)
            if why is not None:
                err = InvalidArgument if start not in prof.starts else InsufficientResources
                raise err(f"GPU {gpu.index}: {why}")
            used = {r.gpu_instance_id for r in mine}
            gi = next(i for i in range(1, 64) if i not in used)
            rec = MigRecord(
                uuid=mig_uuid(gpu.uuid, prof.name, start),
                parent_index=gpu.index,
                profile=prof.name,
                start=start,
                size=prof.memory_slices,
                gpu_instance_id=gi,
            )
            return state.model_copy(update={"mig": (*state.mig, rec)}), rec

        return self._to_device(self._store.update(change))

    def destroy_mig_device(self, mig_uuid: str) -> None:
        def change(state: MockState) -> tuple[MockState, None]:
            rec = next((r for r in state.mig if r.uuid == mig_uuid), None)
            if rec is None:
                raise DeviceNotFound(f"no MIG device {mig_uuid} on node {self.node_name}")
            self._check_alive(state, self._gpus[rec.parent_index])
            if mig_uuid in state.busy:
                raise InUse(
                    f"MIG device {mig_uuid} on GPU {rec.parent_index} has processes running; "
                    "NVML refuses to destroy it (NVML_ERROR_IN_USE)"
                )
            rest = tuple(r for r in state.mig if r.uuid != mig_uuid)
            busy = tuple(u for u in state.busy if u != mig_uuid)
            return state.model_copy(update={"mig": rest, "busy": busy}), None

        self._store.update(change)

    def set_time_slice(self, gpu_uuid: str, interval: Interval) -> None:
        def change(state: MockState) -> tuple[MockState, None]:
            if any(r.uuid == gpu_uuid for r in state.mig):
                raise NotSupported(f"{gpu_uuid} is a MIG device; time slices are set on full GPUs")
            gpu = self._gpu(gpu_uuid)
            self._check_alive(state, gpu)
            if gpu.mig_mode is MigMode.ENABLED:
                raise NotSupported(
                    f"GPU {gpu.index} ({gpu.uuid}) is in MIG mode; its CUDA time slice cannot "
                    "be set"
                )
            slices = dict(state.time_slices)
            if interval is Interval.DEFAULT:
                slices.pop(gpu.index, None)
            else:
                slices[gpu.index] = interval
            return state.model_copy(update={"time_slices": slices}), None

        self._store.update(change)

    def wait_health_event(self, timeout_s: float) -> HealthEvent | None:
        deadline = time.monotonic() + timeout_s
        while True:
            popped = self._store.update(_pop_event)
            if popped is not None:
                event, action = popped
                return HealthEvent(
                    kind=HealthEventKind(event.kind),
                    gpu_uuid=self._gpus[event.gpu_index].uuid,
                    xid=event.xid,
                    gpu_instance_id=event.gpu_instance_id,
                    compute_instance_id=event.compute_instance_id,
                    recovery_action=action,
                )
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def recovery_action(self, gpu_uuid: str) -> RecoveryAction | None:
        gpu = next((g for g in self._gpus if g.uuid == gpu_uuid), None)
        state = self._store.read()
        if gpu is None or gpu.index in state.lost:  # NVML cannot read a lost GPU
            return None
        return state.recovery_actions.get(gpu.index)

    def close(self) -> None:
        return None

    # --- fault injection (tests, demos) -------------------------------------------------

    def inject_xid(
        self,
        gpu_index: int,
        xid: int,
        *,
        gpu_instance_id: int | None = None,
        recovery_action: RecoveryAction | None = None,
    ) -> None:
        """Queue an XID event for a GPU (or one of its MIG devices); with ``recovery_action``
        NVML's recovery action for the GPU becomes that first."""
        self._gpu_at(gpu_index)
        if gpu_instance_id is None:
            inject(self._store, gpu_index, "xid", xid, recovery_action)
            return
        if recovery_action is not None:
            self.set_recovery_action(gpu_index, recovery_action)
        ev = PendingEvent(kind="xid", gpu_index=gpu_index, xid=xid, gpu_instance_id=gpu_instance_id)
        self._store.update(lambda s: (s.model_copy(update={"events": (*s.events, ev)}), None))

    def set_recovery_action(self, gpu_index: int, action: RecoveryAction) -> None:
        """What NVML's recovery-action field reads for the GPU from now on (no event)."""
        self._gpu_at(gpu_index)
        inject(self._store, gpu_index, "recovery-action", recovery_action=action)

    def inject_ecc(self, gpu_index: int, *, double_bit: bool = True) -> None:
        """Queue an ECC error event (double-bit: fatal; single-bit: informational)."""
        self._gpu_at(gpu_index)
        inject(self._store, gpu_index, "ecc-double-bit" if double_bit else "ecc-single-bit")

    def hang(self, seconds: float) -> None:
        """From now on every inventory read blocks ``seconds`` (0: answer at once again)."""
        if seconds < 0:
            raise ValueError(f"hang seconds must be >= 0, got {seconds}")
        self._store.update(lambda s: (s.model_copy(update={"hang_seconds": seconds}), None))

    def fall_off_bus(self, gpu_index: int) -> None:
        """The GPU is lost: inventory reports it, every operation on it raises GpuLost."""
        self._gpu_at(gpu_index)
        inject(self._store, gpu_index, "lost")

    def recover(self, gpu_index: int) -> None:
        """The GPU is back (a reset, a driver reload): it answers again, its recovery action
        is forgotten (None), and a ``recovered`` event clears its faults."""
        self._gpu_at(gpu_index)
        inject(self._store, gpu_index, "recover")

    def run_process(self, mig_uuid: str) -> None:
        """A process now runs on the MIG instance: destroying it raises InUse until
        ``end_process``."""
        self._set_busy(mig_uuid, True)

    def end_process(self, mig_uuid: str) -> None:
        """The MIG instance's processes have exited; it can be destroyed again."""
        self._set_busy(mig_uuid, False)

    def _set_busy(self, mig_uuid: str, busy: bool) -> None:
        def change(s: MockState) -> tuple[MockState, None]:
            if all(r.uuid != mig_uuid for r in s.mig):
                raise DeviceNotFound(f"no MIG device {mig_uuid} on node {self.node_name}")
            rest = {u for u in s.busy if u != mig_uuid}
            now = tuple(sorted(rest | {mig_uuid})) if busy else tuple(sorted(rest))
            return s.model_copy(update={"busy": now}), None

        self._store.update(change)

    # --- helpers --------------------------------------------------------------------------

    def _gpu(self, gpu_uuid: str) -> Gpu:
        gpu = next((g for g in self._gpus if g.uuid == gpu_uuid), None)
        if gpu is None:
            raise DeviceNotFound(f"no GPU {gpu_uuid} on node {self.node_name}")
        return gpu

    def _gpu_at(self, index: int) -> Gpu:
        if not 0 <= index < len(self._gpus):
            raise DeviceNotFound(
                f"no GPU index {index}; node {self.node_name} has {len(self._gpus)}"
            )
        return self._gpus[index]

    @staticmethod
    def _check_alive(state: MockState, gpu: Gpu) -> None:
        if gpu.index in state.lost:
            raise GpuLost(f"GPU {gpu.index} ({gpu.uuid}) has fallen off the bus")

    def _to_device(self, rec: MigRecord) -> MigDevice:
        return MigDevice(
            uuid=rec.uuid,
            parent_uuid=self._gpus[rec.parent_index].uuid,
            parent_index=rec.parent_index,
            profile=rec.profile,
            gpu_instance_id=rec.gpu_instance_id,
            compute_instance_id=rec.compute_instance_id,
            placement_start=rec.start,
            placement_size=rec.size,
        )


def _pop_event(
    state: MockState,
) -> tuple[MockState, tuple[PendingEvent, RecoveryAction | None] | None]:
    """The next event, with the recovery action NVML reads for an XID's GPU as it is taken."""
    if not state.events:
        return state, None
    ev = state.events[0]
    action = state.recovery_actions.get(ev.gpu_index) if ev.kind == "xid" else None
    return state.model_copy(update={"events": state.events[1:]}), (ev, action)
