"""Open the backend a command line or config asks for: ``nvml`` (real) or ``mock``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.mock import MockBackend, load_file, load_named


class BackendKind(StrEnum):
    NVML = "nvml"
    MOCK = "mock"


def open_backend(
    kind: BackendKind,
    *,
    node_name: str,
    profile: str | None = None,
    profile_file: Path | None = None,
    state_file: Path | None = None,
    clique_id: str | None = None,
) -> GpuBackend:
    """The backend for ``kind``.  Mock needs exactly one of ``profile`` / ``profile_file``."""
    if kind is BackendKind.NVML:
        from gpudra.nvml.real import RealBackend

        return RealBackend(node_name=node_name)
    if (profile is None) == (profile_file is None):
        raise ProfileError("the mock backend needs exactly one of --profile or --profile-file")
    prof = load_file(profile_file) if profile_file else load_named(str(profile))
    return MockBackend(prof, node_name=node_name, state_file=state_file, clique_id=clique_id)
