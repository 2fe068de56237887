"""The mock NVML backend: named node profiles (data files) that behave like real hardware."""

from gpudra.nvml.mock.backend import MockBackend
from gpudra.nvml.mock.profile import Profile, available_profiles, load_file, load_named

__all__ = ["MockBackend", "Profile", "available_profiles", "load_file", "load_named"]
