"""Allocator scenarios beyond the shared builders (`gpudra_testkit.builders`: claims, requests,
classes, slices): a matcher for CEL-free scenarios and tainted slices (the toleration table
is `tests.unit.kubetypes.scenarios`)."""

from __future__ import annotations

from typing import Any

from gpudra.allocation.inputs import Device
from gpudra_testkit.builders import DRIVER


def no_cel(expression: str, dev: Device) -> tuple[bool, str | None]:
    """A selector matcher for scenarios that use no CEL selectors."""
    raise AssertionError("these scenarios use no CEL selectors")


def tainted_slice(node_name: str, *taints: dict[str, Any]) -> list[dict[str, Any]]:
    """One node-local slice with one device carrying ``taints``."""
    device = {"name": "dev-0", "attributes": {"type": {"string": "gpu"}}, "taints": list(taints)}
    return [
        {
            "spec": {
                "driver": DRIVER,
                "nodeName": node_name,
                "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
                "devices": [device],
            }
        }
    ]
