"""Mock nodes as the device plugin's tests read them: inventories and catalogues of shipped
machine profiles, with static MIG instances made through the mock's own state file."""

from __future__ import annotations

from pathlib import Path

from gpudra.catalogue.catalogue import NodeCatalogue, build_catalogue
from gpudra.devices.inventory import Inventory
from gpudra.nvml.mock import MockBackend, load_machine

NODE = "node-a"


def mock(profile: str, state_file: Path | None = None) -> MockBackend:
    return MockBackend(load_machine(profile), node_name=NODE, state_file=state_file)


def with_migs(backend: MockBackend, layout: dict[int, list[tuple[str, int]]]) -> MockBackend:
    """Create static MIG instances: GPU index -> [(profile, start memory slice)]."""
    inv = backend.inventory()
    for index, migs in layout.items():
        for profile, start in migs:
            backend.create_mig_device(inv.gpus[index].uuid, profile, start)
    return backend


def catalogue(
    backend_or_inv: MockBackend | Inventory, served: frozenset[int] | None = None
) -> NodeCatalogue:
    inv = backend_or_inv if isinstance(backend_or_inv, Inventory) else backend_or_inv.inventory()
    return build_catalogue(inv, served=served)


# every MIG GPU of dgx-h100-mig cut into seven 1g.10gb instances
SEVEN_1G = {i: [("1g.10gb", s) for s in range(7)] for i in range(8)}
