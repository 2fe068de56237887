"""The node's checkpoint: which claims are prepared (or being prepared) with which devices.

A checkpoint is an API between this version of the daemon and the next: a versioned
pydantic schema, written atomically, read leniently (unknown fields are ignored so a newer
minor's additions do not break an older reader; ``version`` gates incompatible changes).
An unreadable file is never lost or overwritten blindly: it is kept as ``<name>.bad-<time>``
and the state is rebuilt from the CDI specs on disk (which record their claim).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from gpudra.common.atomicfile import write_atomic

log = logging.getLogger(__name__)

CURRENT_VERSION = 1


class _Schema(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class PreparedDevice(_Schema):
    request_names: tuple[str, ...]
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...]
    uuid: str
    # allocated with a shareID (consumable capacity): kept True iff ``share_id`` is set
    # (checkpoints written before ``share_id`` was recorded have only this)
    shareable: bool = False
    # consumable capacity: the allocation's shareID ("" for an exclusive device) and what the
    # share consumes of the GPU (memory in whole MiB, multiprocessors; 0: none consumed)
    share_id: str = ""
    share_memory_mib: int = 0
    share_multiprocessors: int = 0
    admin_access: bool = False  # an adminAccess allocation: never exclusive either way
    # what the device occupies physically: "<gpu uuid>/<memory slice>" entries (whole GPU:
    # all eight); two prepared devices conflict when these intersect
    footprint: tuple[str, ...] = ()
    # dynamic MIG: the instance prepare creates (uuid stays "" until it exists)
    mig_parent: str = ""
    mig_profile: str = ""
    mig_start: int = -1
    # this daemon creates the instance: recorded only after the placement was seen free, so
    # an instance found there on a resumed prepare (a crash right after creating it) is ours;
    # the instance's UUID is recorded the moment it exists.  Unprepare destroys only these.
    mig_owned: bool = False
    # a TimeSlicing config's interval, set on the device's GPU at prepare and back to the
    # driver's default at unprepare ("": none asked)
    time_slice: str = ""

    @property
    def dynamic_mig(self) -> bool:
        return bool(self.mig_profile)

    @property
    def ours(self) -> bool:
        """The MIG instance behind this device was created by gpudra (checkpoints written
        before ``mig_owned`` recorded a UUID only for instances gpudra had created)."""
        return self.dynamic_mig and (self.mig_owned or bool(self.uuid))


class MpsPlan(_Schema):
    """The MPS control daemon a claim asks for, planned at prepare before any side effect:
    the claim's own (an MPS config: one daemon for all its devices, with the config's
    defaults) or, for a claim holding a share of a GPU (``shared``), the GPU's one daemon
    that every share claim on it uses, each claim's limits set on its own clients."""

    uuids: tuple[str, ...]  # the claim's device UUIDs, in its order ("": a MIG not made yet)
    # host paths: <plugin dir>/mps/<claim uid>/{pipe,log}; shared: .../gpu-<uuid>/{pipe,log}
    pipe_dir: str
    log_dir: str
    active_thread_percentage: int | None = None  # the daemon's default (never when shared)
    # per device (same order as ``uuids``): the pinned memory limit, "<n>M", "" for none
    pinned_limits: tuple[str, ...] = ()
    # the GPU's daemon, shared by the claims with the same ``pipe_dir`` (started by the
    # first, stopped by the last); the daemon has no defaults then, the claim's share is
    # set on its clients (its containers' environment): "<n>M" ("" none), a percentage
    shared: bool = False
    client_pinned_limit: str = ""
    client_thread_percentage: int | None = None

    def limits(self) -> dict[str, str]:
        """UUID -> limit, for the devices that have one."""
        return {u: m for u, m in zip(self.uuids, self.pinned_limits, strict=False) if m}


class MpsProcess(_Schema):
    """A started MPS daemon: its pid and its start time (``/proc/<pid>/stat`` field 22), so a
    pid the kernel gave to another process is never taken for it."""

    pid: int
    start_time: int


class PreparedClaim(_Schema):
    uid: str
    namespace: str
    name: str
    state: Literal["preparing", "prepared"]
    devices: tuple[PreparedDevice, ...]
    # MPS (added compatibly: absent in older checkpoints, ignored by older readers)
    mps: MpsPlan | None = None
    mps_process: MpsProcess | None = None


class Checkpoint(_Schema):
    version: int = CURRENT_VERSION
    node_name: str
    # the boot the claims were prepared in ("" in checkpoints written before it was recorded)
    boot_id: str = ""
    claims: dict[str, PreparedClaim] = {}


class CheckpointError(Exception):
    """The checkpoint could not be written; the message says where and why."""


class CheckpointStore:
    """The checkpoint file and its in-memory copy; every change is persisted before return."""

    def __init__(
        self,
        path: Path,
        *,
        node_name: str,
        rebuild: Callable[[], dict[str, PreparedClaim]] | None = None,
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.recovered_from: Path | None = None
        self._data = self._load(node_name, rebuild or dict)

    def _load(self, node: str, rebuild: Callable[[], dict[str, PreparedClaim]]) -> Checkpoint:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Checkpoint(node_name=node)
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {e.strerror or e}") from e
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            version = doc.get("version")
            if version != CURRENT_VERSION:
                raise ValueError(f"unsupported checkpoint version {version!r}")
            return Checkpoint.model_validate(doc)
        except (ValueError, ValidationError) as e:
            bad = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            shutil.copy2(self.path, bad)
            self.recovered_from = bad
            claims = rebuild()
            log.error(
                "checkpoint %s is unreadable (%s); kept a copy at %s and rebuilt %d claim(s) "
                "from the CDI specs on disk",
                self.path,
                str(e).splitlines()[0],
                bad,
                len(claims),
            )
            cp = Checkpoint(node_name=node, claims=claims)
            self._write(cp)
            return cp

    def _write(self, cp: Checkpoint) -> None:
        body = json.dumps(cp.model_dump(mode="json", by_alias=True), indent=1).encode()
        try:
            write_atomic(self.path, body, mode=0o600)
        except OSError as e:
            raise CheckpointError(f"cannot write checkpoint {self.path}: {e.strerror or e}") from e

    def begin_boot(self, boot_id: str) -> list[PreparedClaim]:
        """Record the current boot.  If the checkpoint was written in another boot, what its
        claims were prepared with is gone (CDI specs live on tmpfs, MIG instances do not
        survive a reboot): every claim goes back to *preparing*, so the kubelet's next
        NodePrepareResources prepares it again instead of answering from the checkpoint.
        Returns those claims."""
        with self._lock:
            old = self._data.boot_id
            if old == boot_id:
                return []
            # no recorded boot (a checkpoint from before it was recorded): nothing to redo
            stale = list(self._data.claims.values()) if old else []
            again = {c.uid: c.model_copy(update={"state": "preparing"}) for c in stale}
            claims = {**self._data.claims, **again}
            new = self._data.model_copy(update={"boot_id": boot_id, "claims": claims})
            self._write(new)
            self._data = new
            return stale

    def claims(self) -> dict[str, PreparedClaim]:
        with self._lock:
            return dict(self._data.claims)

    def get(self, uid: str) -> PreparedClaim | None:
        with self._lock:
            return self._data.claims.get(uid)

    def put(self, claim: PreparedClaim) -> None:
        with self._lock:
            new = self._data.model_copy(update={"claims": {**self._data.claims, claim.uid: claim}})
            self._write(new)
            self._data = new

    def remove(self, uid: str) -> None:
        with self._lock:
            if uid not in self._data.claims:
                return
            rest = {k: v for k, v in self._data.claims.items() if k != uid}
            new = self._data.model_copy(update={"claims": rest})
            self._write(new)
            self._data = new
