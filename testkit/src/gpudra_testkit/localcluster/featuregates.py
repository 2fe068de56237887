"""Which feature gates and API versions the local control plane enables, decided by version.

One gate string goes to kube-apiserver, kube-controller-manager and kube-scheduler alike: a
gate on in the apiserver but off in the scheduler silently drops fields or skips allocation
features.  The table (see the control-plane recipe, "DRA feature gates per version"):

* 1.34, 1.35: partitionable devices and device taints are alpha and off, so turn them on.
* 1.36+: both are beta and on by default; nothing to set.
* DeviceTaintRule objects (optional): an alpha API in 1.34/1.35 (``v1alpha3``), off-by-default
  beta in 1.36 (``v1beta2``), GA in 1.37.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OLDEST_MINOR = 34


@dataclass(frozen=True, order=True)
class KubeVersion:
    """A Kubernetes release ``1.<minor>.<patch>``."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """Parse ``1.37.2`` or ``v1.37.2`` (a missing patch reads as 0)."""
        m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
        if not m:
            raise ValueError(f"not a Kubernetes version: {text!r} (expected e.g. 1.37.2)")
        return cls(int(m[1]), int(m[2]), int(m[3] or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class ApiSettings:
    """The ``--feature-gates`` (shared by all components) and the apiserver ``--runtime-config``."""

    gates: dict[str, bool]
    runtime_config: dict[str, bool]

    @property
    def gates_flag(self) -> str:
        """``A=true,B=false`` sorted by name; "" when every default is right."""
        return ",".join(f"{k}={str(v).lower()}" for k, v in sorted(self.gates.items()))

    @property
    def runtime_config_flag(self) -> str:
        return ",".join(f"{k}={str(v).lower()}" for k, v in sorted(self.runtime_config.items()))


def api_settings(
    version: KubeVersion | str,
    *,
    device_taint_rules: bool = False,
    extra_gates: dict[str, bool] | None = None,
) -> ApiSettings:
    """The gates and runtime config gpudra needs on ``version``.

    ``device_taint_rules`` also serves the DeviceTaintRule API where it is not on by default;
    ``extra_gates`` are added last (and win), for experiments.
    """
    v = KubeVersion.parse(version) if isinstance(version, str) else version
    if v.major != 1 or v.minor < OLDEST_MINOR:
        raise ValueError(f"Kubernetes {v} is not supported: DRA v1 needs 1.{OLDEST_MINOR} or newer")
    gates: dict[str, bool] = {}
    runtime: dict[str, bool] = {}
    if v.minor <= 35:
        gates["DRAPartitionableDevices"] = True
        gates["DRADeviceTaints"] = True
    if v.minor == 34:
        # 1.34's scheduler watches DeviceTaintRule (v1alpha3) whenever DRADeviceTaints is on;
        # without the API its informer never syncs and no DRA pod is ever scheduled.
        runtime["resource.k8s.io/v1alpha3"] = True
    if device_taint_rules:
        if v.minor == 34:
            # 1.34 has no separate gate: DeviceTaintRule rides on DRADeviceTaints.
            runtime["resource.k8s.io/v1alpha3"] = True
        elif v.minor == 35:
            gates["DRADeviceTaintRules"] = True
            runtime["resource.k8s.io/v1alpha3"] = True
        elif v.minor == 36:
            gates["DRADeviceTaintRules"] = True
            runtime["resource.k8s.io/v1beta2"] = True
    gates.update(extra_gates or {})
    return ApiSettings(gates=gates, runtime_config=runtime)
