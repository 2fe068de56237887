"""Building blocks for allocator tests: slices from mock profiles, classes, claims as data."""

from __future__ import annotations

from typing import Any

from gpudra.nvml.mock import MockBackend, load_named
from gpudra.resourceslices.builder import desired_slices

DRIVER = "gpu.gpudra.io"


def profile_slices(profile: str, node: str) -> list[dict[str, Any]]:
    inv = MockBackend(load_named(profile), node_name=node).inventory()
    return desired_slices(inv, driver=DRIVER, generation=1)


def mig_slices(node_name: str, profile: str = "dgx-h100-mig") -> list[dict[str, Any]]:
    """The node's slices with dynamic MIG on every GPU: each GPU's placements as devices
    drawing on its memory-slice counters."""
    inv = MockBackend(load_named(profile), node_name=node_name).inventory()
    gpus = frozenset(range(len(inv.gpus)))
    return desired_slices(inv, driver=DRIVER, generation=1, dynamic_mig=gpus)


def mig_profiles(*profiles: str) -> list[dict[str, Any]]:
    """Selectors for MIG devices of the given profiles."""
    a = f"device.attributes['{DRIVER}']"
    return [{"cel": {"expression": f"{a}.type == 'mig' && {a}.profile in {list(profiles)!r}"}}]


def device_class(name: str = "gpu.gpudra.io", *exprs: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": e}} for e in exprs]},
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def claim(
    *requests: dict[str, Any], constraints: list[dict[str, Any]] | None = None, name: str = "c"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"devices": {"requests": list(requests), "constraints": constraints or []}},
    }


def exactly(name: str, count: int = 1, cls: str = "gpu.gpudra.io", **kw: Any) -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": cls, "count": count, **kw}}


MIG_CLASS = "mig.gpudra.io"


def mig(name: str, count: int, *profiles: str) -> dict[str, Any]:
    """A request for ``count`` MIG devices of the given profiles."""
    return exactly(name, count, cls=MIG_CLASS, selectors=mig_profiles(*profiles))


def nvlink(*requests: str) -> dict[str, Any]:
    return {"requests": list(requests), "matchAttribute": "gpu.gpudra.io/nvlinkGroup"}


def same(attribute: str, *requests: str) -> dict[str, Any]:
    return {"requests": list(requests), "matchAttribute": f"{DRIVER}/{attribute}"}


def distinct(attribute: str, *requests: str) -> dict[str, Any]:
    return {"requests": list(requests), "distinctAttribute": f"{DRIVER}/{attribute}"}


def allocated(claim_name: str, node_name: str, *devices: str) -> dict[str, Any]:
    return {
        "metadata": {"name": claim_name, "namespace": "ns"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "r", "driver": DRIVER, "pool": node_name, "device": d}
                        for d in devices
                    ]
                }
            }
        },
    }


def counter_slice(node_name: str) -> list[dict[str, Any]]:
    """The upstream backtracking benchmark shape: 8 devices, counters cpu1..cpu8 and mem=70Gi;
    device-1 consumes 20Gi, the others 10Gi each."""
    counters = {f"cpu{i}": {"value": "1"} for i in range(1, 9)} | {"mem": {"value": "70Gi"}}
    devices = [
        {
            "name": f"device-{i}",
            "attributes": {"type": {"string": "gpu"}},
            "consumesCounters": [
                {
                    "counterSet": "set",
                    "counters": {
                        f"cpu{i}": {"value": "1"},
                        "mem": {"value": "20Gi" if i == 1 else "10Gi"},
                    },
                }
            ],
        }
        for i in range(1, 9)
    ]
    return [
        {
            "spec": {
                "driver": DRIVER,
                "nodeName": node_name,
                "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
                "sharedCounters": [{"name": "set", "counters": counters}],
                "devices": devices,
            }
        }
    ]
