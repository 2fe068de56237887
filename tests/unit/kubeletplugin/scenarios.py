"""Claims as the node daemon's tests read them: allocated on node ``node-a`` of driver
``gpu.gpudra.io`` (shared by the prepare, prepare-service and daemon tests)."""

from __future__ import annotations

from typing import Any

from gpudra_testkit.builders import DRIVER, claim_on_node, device_result

NODE = "node-a"

__all__ = ["DRIVER", "NODE", "claim", "result"]


def claim(*results: dict[str, Any], node: str = NODE, uid: str = "uid-1") -> dict[str, Any]:
    return claim_on_node(node, *results, uid=uid)


def result(device: str, request: str = "gpus", **kw: Any) -> dict[str, Any]:
    return device_result(device, request, pool=NODE, **kw)
