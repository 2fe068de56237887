"""The node's checkpoint file: where the schema (`gpudra.nodestate.checkpoint`) is kept.

Written atomically on every change, read leniently (the schema ignores unknown fields so a
newer minor's additions do not break an older reader; ``version`` gates incompatible
changes).  An unreadable file is never lost or overwritten blindly: it is kept as
``<name>.bad-<time>`` and the state is rebuilt from the CDI specs on disk (which record their
claim).  The pure modules import the schema, never this store.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from gpudra.common.atomicfile import write_atomic
from gpudra.common.errors import GpudraError
from gpudra.nodestate.checkpoint import CURRENT_VERSION, Checkpoint, PreparedClaim

log = logging.getLogger(__name__)


class CheckpointError(GpudraError):
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
