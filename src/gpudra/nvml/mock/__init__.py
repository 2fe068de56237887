"""The mock NVML backend: named machine profiles (data files) that behave like real hardware."""

from gpudra.nvml.mock.backend import MockBackend
from gpudra.nvml.mock.profile import (
    MachineProfile,
    available_machines,
    load_machine,
    load_machine_file,
)

__all__ = [
    "MachineProfile",
    "MockBackend",
    "available_machines",
    "load_machine",
    "load_machine_file",
]
