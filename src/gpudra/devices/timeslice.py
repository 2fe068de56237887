"""CUDA time-slice lengths a GPU can be set to (``nvidia-smi compute-policy --set-timeslice``).

The names are NVIDIA's claim-config values (``timeSlicingConfig.interval``); the numbers are
what ``nvidia-smi`` takes (0 = the driver's default).
"""

from __future__ import annotations

from enum import StrEnum


class Interval(StrEnum):
    DEFAULT = "Default"
    SHORT = "Short"
    MEDIUM = "Medium"
    LONG = "Long"

    @property
    def nvidia_smi_value(self) -> int:
        return list(Interval).index(self)
