"""Write and remove CDI spec files atomically in the CDI directory (claim specs by claim UID,
the device plugin's one spec by its file name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpudra.cdi.spec import CLAIM_UID_ANNOTATION, DEVICE_PLUGIN_SPEC_FILE, spec_file_name
from gpudra.common.atomicfile import write_atomic
from gpudra.common.errors import GpudraError


class CdiWriteError(GpudraError):
    """The spec could not be written or removed; the message names the directory and why."""


class CdiWriter:
    def __init__(self, cdi_dir: Path) -> None:
        self.cdi_dir = cdi_dir

    def path(self, claim_uid: str) -> Path:
        return self.cdi_dir / spec_file_name(claim_uid)

    def write(self, claim_uid: str, spec: dict[str, Any]) -> Path:
        return self._write(self.path(claim_uid), spec)

    def write_device_plugin_spec(self, spec: dict[str, Any]) -> Path:
        return self._write(self.cdi_dir / DEVICE_PLUGIN_SPEC_FILE, spec)

    def device_plugin_spec(self) -> dict[str, Any] | None:
        """The device plugin's spec as on disk, or None (absent or unreadable)."""
        try:
            spec = json.loads((self.cdi_dir / DEVICE_PLUGIN_SPEC_FILE).read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def _write(self, path: Path, spec: dict[str, Any]) -> Path:
        try:
            write_atomic(path, (json.dumps(spec, indent=2) + "\n").encode())
        except OSError as e:
            raise CdiWriteError(
                f"cannot write CDI spec {path.name} to {self.cdi_dir}: {e.strerror or e}"
            ) from e
        return path

    def remove(self, claim_uid: str) -> bool:
        """Remove the claim's spec; False if there was none."""
        try:
            self.path(claim_uid).unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise CdiWriteError(
                f"cannot remove CDI spec {self.path(claim_uid).name} of claim {claim_uid} from "
                f"{self.cdi_dir}: {e.strerror or e}"
            ) from e
        return True

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every readable gpudra claim spec in the directory, keyed by claim UID."""
        out: dict[str, dict[str, Any]] = {}
        for f in sorted(self.cdi_dir.glob(spec_file_name("*"))):
            try:
                spec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(spec, dict) or not isinstance(spec.get("annotations"), dict):
                continue  # JSON, but not a spec gpudra wrote
            uid = spec["annotations"].get(CLAIM_UID_ANNOTATION)
            if uid:
                out[uid] = spec
        return out
