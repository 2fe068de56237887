"""Seeded random clusters and claims for differential tests and benchmarks.

Claims mix what users write: 1-8 whole GPUs, CEL selectors on product, memory, compute
capability and index, ``matchAttribute`` on the NVLink group, ``firstAvailable`` with a
fallback, and sometimes something impossible (9 GPUs, a product nobody has).
"""

from __future__ import annotations

import random
from typing import Any

PROFILES = ("dgx-h100", "dgx1-v100", "pcie-l4", "gb200-tray", "dgx-a100")
SELECTORS = (
    "device.attributes['gpu.gpudra.io'].productName == 'NVIDIA H100 80GB HBM3'",
    "device.attributes['gpu.gpudra.io'].productName.startsWith('Tesla')",
    "device.capacity['gpu.gpudra.io'].memory.compareTo(quantity('40Gi')) >= 0",
    "device.capacity['gpu.gpudra.io'].memory.isLessThan(quantity('24Gi'))",
    "device.attributes['gpu.gpudra.io'].cudaComputeCapability.isGreaterThan(semver('8.0.0'))",
    "device.attributes['gpu.gpudra.io'].index < 4",
    "device.attributes['gpu.gpudra.io'].architecture in ['Hopper', 'Ampere']",
    "'nvlinkDomain' in device.attributes['gpu.gpudra.io']",
    "device.attributes['gpu.gpudra.io'].productName == 'NVIDIA B300'",
    # a runtime error on GPUs without NVSwitch: kube-scheduler then fails the whole pod
    "device.attributes['gpu.gpudra.io'].nvlinkDomain == 'nvswitch-0'",
)
GPU_CLASS = "gpu.gpudra.io"


def _exact(rng: random.Random, count: int) -> dict[str, Any]:
    body: dict[str, Any] = {"deviceClassName": GPU_CLASS, "count": count}
    if rng.random() < 0.5:
        body["selectors"] = [{"cel": {"expression": rng.choice(SELECTORS)}}]
    return body


def random_claim(rng: random.Random, name: str, namespace: str) -> dict[str, Any]:
    count = rng.choice([1, 1, 1, 2, 2, 2, 4, 4, 8, 3, 9])
    requests: list[dict[str, Any]] = []
    constraints: list[dict[str, Any]] = []
    if rng.random() < 0.2:
        subs = [
            {"name": "big", **_exact(rng, max(count, 4))},
            {"name": "small", **_exact(rng, 1)},
        ]
        requests.append({"name": "gpus", "firstAvailable": subs})
    else:
        requests.append({"name": "gpus", "exactly": _exact(rng, count)})
        if count > 1 and rng.random() < 0.5:
            constraints.append(
                {"requests": ["gpus"], "matchAttribute": "gpu.gpudra.io/nvlinkGroup"}
            )
    if rng.random() < 0.15:
        requests.append({"name": "extra", "exactly": _exact(rng, 1)})
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": requests, "constraints": constraints}},
    }


def random_profiles(rng: random.Random, nodes: int) -> list[str]:
    return [rng.choice(PROFILES) for _ in range(nodes)]


# Consumable capacity: claims for shares of GPUs published with allowMultipleAllocations
# (the node daemon's --shared-gpus), what the requests take and whether they may fit.
MEMORY_ASKS = ("1Gi", "10Gi", "20G", "20Gi", "24Gi", "40Gi", "70Gi", "80Gi", "100Gi", "500Mi")
MULTI_SELECTOR = "device.allowMultipleAllocations"  # declared in CEL only from 1.36
SHARE_SELECTORS = (
    "device.capacity['gpu.gpudra.io'].memory.compareTo(quantity('40Gi')) >= 0",
    "device.attributes['gpu.gpudra.io'].index < 2",
    "device.attributes['gpu.gpudra.io'].productName == 'NVIDIA L4'",
)


def _share(rng: random.Random, count: int, consumable: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"deviceClassName": GPU_CLASS, "count": count}
    asks: dict[str, str] = {}
    if rng.random() < 0.85:
        asks["memory"] = rng.choice(MEMORY_ASKS)
    if rng.random() < 0.2:
        asks["multiprocessors"] = rng.choice(["16", "66", "132", "200"])
    if rng.random() < 0.15:
        asks["shares"] = rng.choice(["1", "2", "3"])
    if asks:
        body["capacity"] = {"requests": asks}
    if rng.random() < 0.3:
        choices = SHARE_SELECTORS + ((MULTI_SELECTOR,) if consumable else ())
        body["selectors"] = [{"cel": {"expression": rng.choice(choices)}}]
    return body


def random_share_claim(
    rng: random.Random, name: str, namespace: str, *, consumable: bool = True
) -> dict[str, Any]:
    """A claim for shares: mostly one device with a memory ask, sometimes two requests (one
    claim may hold two shares of one GPU) or two devices with distinct UUIDs.  Not
    ``consumable`` (a server before 1.36): no selector on ``device.allowMultipleAllocations``,
    which CEL does not declare there."""
    requests = [{"name": "gpu", "exactly": _share(rng, rng.choice([1, 1, 1, 1, 2]), consumable)}]
    constraints: list[dict[str, Any]] = []
    if rng.random() < 0.2:
        requests.append({"name": "more", "exactly": _share(rng, 1, consumable)})
    if rng.random() < 0.2:
        constraints.append({"distinctAttribute": "gpu.gpudra.io/uuid"})
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": requests, "constraints": constraints}},
    }
