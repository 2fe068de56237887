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
