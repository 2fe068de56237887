"""resource.k8s.io/v1 facts gpudra relies on: names, limits, and typed values for slices.

Pure data and small functions, no client: the slice builder, the prepare logic and the
allocator all speak the API's JSON shape through these helpers so the shape lives in one
place.  Limits are the API's own constants (``k8s.io/api/resource/v1/types.go``,
https://github.com/kubernetes/api/blob/master/resource/v1/types.go).
"""

from __future__ import annotations

import re
from typing import Any

GROUP = "resource.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

DRIVER_NAME = "gpu.gpudra.io"
GPU_CLASS = "gpu.gpudra.io"
MIG_CLASS = "mig.gpudra.io"

MAX_DEVICES_PER_SLICE = 128
MAX_DEVICES_PER_SLICE_ADVANCED = 64  # any device with taints or consumesCounters (1.35+)
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_STRING_ATTRIBUTE = 64
MAX_REQUESTS_PER_CLAIM = 32
MAX_RESULTS_PER_ALLOCATION = 32
MAX_DNS_LABEL = 63

# Devices the gpudra controller allocates carry this taint, so kube-scheduler (which only
# allocates claims that tolerate it) can never pick them: the two allocators never share a
# device.  Needs DRADeviceTaints (default on from 1.36; the local cluster enables it before).
MANAGED_TAINT_KEY = "gpu.gpudra.io/controller-managed"
MANAGED_TAINT = {"key": MANAGED_TAINT_KEY, "value": "true", "effect": "NoSchedule"}

STANDARD_DOMAIN = "resource.kubernetes.io"
PCI_BUS_ID = f"{STANDARD_DOMAIN}/pciBusID"
PCIE_ROOT = f"{STANDARD_DOMAIN}/pcieRoot"
# the standard NUMA attribute (GA in 1.37), published beside gpudra's own numaNode, which
# existing selectors use
NUMA_NODE = f"{STANDARD_DOMAIN}/numaNode"


def semver(raw: str) -> str:
    """A driver/CUDA/compute-capability version as strict semver: ``580.82.07`` -> ``580.82.7``,
    ``9.0`` -> ``9.0.0`` (the API rejects leading zeros and missing parts)."""
    parts = [int(p) for p in re.findall(r"\d+", raw)[:3]]
    parts += [0] * (3 - len(parts))
    return ".".join(str(p) for p in parts)


def string_attr(value: str) -> dict[str, Any]:
    if len(value) > MAX_STRING_ATTRIBUTE:
        raise ValueError(f"string attribute {value!r} is longer than {MAX_STRING_ATTRIBUTE}")
    return {"string": value}


def version_attr(value: str) -> dict[str, Any]:
    return {"version": semver(value)}


def int_attr(value: int) -> dict[str, Any]:
    return {"int": value}


def bool_attr(value: bool) -> dict[str, Any]:
    return {"bool": value}


def quantity(value: int) -> dict[str, Any]:
    return {"value": str(value)}


def dns_label(raw: str) -> str:
    """``raw`` folded into a DNS label (lowercase, [a-z0-9-], at most 63 characters)."""
    label = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    return label[:MAX_DNS_LABEL].rstrip("-") or "x"


def base_request(request: str) -> str:
    """``main/sub`` -> ``main``: the claim's request a result or constraint belongs to (and
    the name the kubelet wants)."""
    return request.split("/", 1)[0]


def subrequest(request: str) -> str:
    """``main/sub`` -> ``sub``; ``""`` for a plain request name."""
    return request.partition("/")[2]


def request_name(base: str, sub: str) -> str:
    """The result name of a firstAvailable subrequest: ``base/sub``."""
    return f"{base}/{sub}"
