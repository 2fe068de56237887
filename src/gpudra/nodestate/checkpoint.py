"""The node's checkpoint schema: which claims are prepared (or being prepared) with which devices.

A checkpoint is an API between this version of the daemon and the next: a versioned pydantic
schema, read leniently (unknown fields are ignored so a newer minor's additions do not break
an older reader; ``version`` gates incompatible changes).  Camel-case JSON.  Pure: reading
and writing the file is `gpudra.kubeletplugin.checkpoint_store`'s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

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
