"""The pure device model: GPUs, MIG geometry, NVLink/PCIe topology and a node's inventory.

No IO beyond reading the package's own data tables; every other layer builds on these types.
"""

from gpudra.devices.gpu import Gpu, Health, MigDevice, MigMode
from gpudra.devices.inventory import Inventory
from gpudra.devices.mig import MigFamily, MigInstance, MigProfile, Placement
from gpudra.devices.topology import NvLinkPair, NvSwitchDomain, PcieLevel, PciePair, Topology

__all__ = [
    "Gpu",
    "Health",
    "Inventory",
    "MigDevice",
    "MigFamily",
    "MigInstance",
    "MigMode",
    "MigProfile",
    "NvLinkPair",
    "NvSwitchDomain",
    "PcieLevel",
    "PciePair",
    "Placement",
    "Topology",
]
