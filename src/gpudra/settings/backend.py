"""Where GPUs come from: real NVML or a mock machine, and the one rule on choosing a machine.

``mock_machine_problem`` is the only statement of "the mock needs exactly one of a shipped
machine profile (``profile``) or a machine profile file (``profile_file``)"; the settings
models validate with it and the backend factory can call it, so every entry point refuses
the same thing with the same words.  It lives here, below ``gpudra.nvml`` in the layers, so
that settings can use it without importing the backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BackendName = Literal["nvml", "mock"]
"""The GPU backends: real NVML or the mock machine (``gpudra.nvml.factory`` opens them)."""

MOCK_NEEDS_ONE_MACHINE = (
    "the mock backend needs exactly one of profile or profile_file "
    "(--profile NAME or --profile-file FILE)"
)


def mock_machine_problem(
    backend: str, profile: str | None, profile_file: Path | None
) -> str | None:
    """Why this backend choice cannot open, or None: mock needs exactly one machine source."""
    if backend == "mock" and (profile is None) == (profile_file is None):
        return MOCK_NEEDS_ONE_MACHINE
    return None


class BackendSettings(BaseModel):
    """The GPU backend settings; ``gpudra discover`` takes exactly these, the node daemon more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = Field(
        default="nvml",
        description="where GPUs come from: nvml (the real driver) or mock (a simulated machine)",
    )
    profile: str | None = Field(
        default=None, description="mock: the name of a shipped machine profile"
    )
    profile_file: Path | None = Field(
        default=None, description="mock: a machine profile YAML file of your own"
    )
    mock_state_file: Path | None = Field(
        default=None,
        description="mock: file holding the mock machine's MIG instances and faults, shared "
        "by every process using it",
    )
    clique_id: str | None = Field(
        default=None, description="mock: override the machine profile's NVLink clique id"
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _backend(cls, v: Any) -> Any:
        allowed = get_args(BackendName)
        if v not in allowed:
            raise ValueError(f"backend must be {' or '.join(map(repr, allowed))}, not {v!r}")
        return v

    @model_validator(mode="after")
    def _one_machine(self) -> BackendSettings:
        problem = mock_machine_problem(self.backend, self.profile, self.profile_file)
        if problem is not None:
            raise ValueError(problem)
        return self
