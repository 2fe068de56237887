"""How gpudra names the devices of a node's pool (pure).

``gpu-<minor>`` for a whole GPU, ``gpu-<minor>-mig-<profile>-<profileId>-<start>`` for a MIG
device (static or a dynamic placement), ``gpu-<minor>-counter-set`` for a dynamic-MIG GPU's
counter set.  Minors, not indices: they are what ``/dev/nvidia<minor>`` and the NVIDIA
driver's device names use, and they do not shift when a GPU disappears.
"""

from __future__ import annotations

from gpudra.devices.gpu import Gpu
from gpudra.devices.mig import MigProfile


def gpu_device_name(gpu: Gpu) -> str:
    return f"gpu-{gpu.minor}"


def mig_device_name(gpu: Gpu, profile: MigProfile, start: int) -> str:
    label = profile.name.replace(".", "").replace("+", "-")
    return f"gpu-{gpu.minor}-mig-{label}-{profile.id}-{start}"


def counter_set_name(gpu: Gpu) -> str:
    return f"gpu-{gpu.minor}-counter-set"
