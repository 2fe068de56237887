"""Polling for integration tests: wait until a check returns something truthy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 30.0, *, interval: float = 0.1
) -> Any:
    """Poll ``check`` every ``interval`` s; return its first truthy value or fail naming
    ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def allocation(
    node: str,
    devices: list[str],
    *,
    request: str = "gpus",
    driver: str = "gpu.gpudra.io",
    pool: str | None = None,
    tolerate_managed: bool = False,
) -> dict[str, Any]:
    """A hand-written ``status.allocation`` (as an allocator would write it) for bad-input and
    crash tests."""
    result: dict[str, Any] = {"request": request, "driver": driver, "pool": pool or node}
    if tolerate_managed:
        result["tolerations"] = [
            {
                "key": "gpu.gpudra.io/controller-managed",
                "operator": "Exists",
                "effect": "NoSchedule",
            }
        ]
    return {
        "devices": {"results": [dict(result, device=d) for d in devices]},
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
        "allocationTimestamp": "2026-01-01T00:00:00Z",
    }
