"""The mock node's mutable "hardware" state: MIG instances and which of them have processes,
lost GPUs, each GPU's recovery action (NVML's ``NVML_FI_DEV_GET_GPU_RECOVERY_ACTION``) and
CUDA time slice (``nvidia-smi compute-policy``), pending health events, and how long NVML
calls hang.

Real hardware outlives the daemon; so must the mock's.  With a state file the state is shared
by every process that opens the same mock node (daemon, tests, a restarted daemon) and
survives SIGKILL: updates run under an exclusive ``flock`` and replace the file atomically.
Without one it lives in memory for the life of the process.
"""

from __future__ import annotations

import fcntl
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from gpudra.common.atomicfile import write_atomic
from gpudra.common.model import Model
from gpudra.devices.faults import RecoveryAction
from gpudra.devices.timeslice import Interval
from gpudra.nvml.errors import ProfileError

T = TypeVar("T")


class MigRecord(Model):
    uuid: str
    parent_index: int
    profile: str
    start: int
    size: int
    gpu_instance_id: int
    compute_instance_id: int = 0


class PendingEvent(Model):
    kind: str
    gpu_index: int
    xid: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


class MockState(Model):
    version: int = 1
    mig: tuple[MigRecord, ...] = ()
    lost: tuple[int, ...] = ()
    # MIG instances with processes running on them (NVML refuses to destroy those); a field
    # added without a version bump: state files written before it read as "none busy"
    busy: tuple[str, ...] = ()
    events: tuple[PendingEvent, ...] = ()
    # every inventory read takes this long: a driver stuck in a lock, a GPU that stops
    # answering (NVML calls block; nothing fails)
    hang_seconds: float = 0.0
    # GPU index -> what NVML's recovery-action field reads; a GPU absent reads as a driver
    # without the field (None), as every GPU did before the field was added (no version bump)
    recovery_actions: dict[int, RecoveryAction] = {}
    # GPU index -> the CUDA time slice set on it; a GPU absent is at the driver's default, as
    # every GPU of a state file written before the field was (no version bump)
    time_slices: dict[int, Interval] = {}


class StateStore:
    """Serialized read-modify-write access to one mock node's state."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._memory = MockState()
        self._mutex = threading.Lock()
        # the file as last parsed: (inode, mtime, size) and its state; every write renames a
        # new file into place, so an unchanged key is an unchanged file (the health-event wait
        # polls 20 times a second)
        self._parsed: tuple[tuple[int, int, int], MockState] | None = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self._path is None:
                yield
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self._path.with_name(self._path.name + ".lock")
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> MockState:
        if self._path is None:
            return self._memory
        try:
            st = self._path.stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._parsed is not None and self._parsed[0] == key:
                return self._parsed[1]
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return MockState()
        try:
            state = MockState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as e:
            raise ProfileError(f"{self._path}: mock state file is corrupt: {e}") from e
        self._parsed = (key, state)
        return state

    def _store(self, state: MockState) -> None:
        if self._path is None:
            self._memory = state
        else:
            write_atomic(self._path, json.dumps(state.to_wire(), indent=1).encode())

    def read(self) -> MockState:
        with self._locked():
            return self._load()

    def update(self, change: Callable[[MockState], tuple[MockState, T]]) -> T:
        """Apply ``change`` to the current state under the lock and persist its new state
        (``change`` returns a new state, never mutates the one it is given; returning that
        one means nothing changed and nothing is written)."""
        with self._locked():
            old = self._load()
            new, result = change(old)
            if new is not old:  # changes return a new state (model_copy); the same: no change
                self._store(new)
            return result
