"""Open the backend a command line or config asks for: ``nvml`` (real) or ``mock``."""

from __future__ import annotations

from pathlib import Path

from gpudra.nvml.backend import GpuBackend
from gpudra.nvml.errors import ProfileError
from gpudra.nvml.mock import MockBackend, load_machine, load_machine_file
from gpudra.settings.backend import BackendName, mock_machine_problem


def open_backend(
    kind: BackendName,
    *,
    node_name: str,
    profile: str | None = None,
    profile_file: Path | None = None,
    state_file: Path | None = None,
    clique_id: str | None = None,
) -> GpuBackend:
    """The backend for ``kind``.  Mock needs exactly one of ``profile`` / ``profile_file``."""
    if kind == "nvml":
        from gpudra.nvml.real import RealBackend

        return RealBackend(node_name=node_name)
    problem = mock_machine_problem(kind, profile, profile_file)
    if problem is not None:
        raise ProfileError(problem)
    machine = load_machine_file(profile_file) if profile_file else load_machine(str(profile))
    return MockBackend(machine, node_name=node_name, state_file=state_file, clique_id=clique_id)
