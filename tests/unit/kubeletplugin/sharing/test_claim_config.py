"""Opaque claim configuration (resource.gpudra.io/v1beta1): NVIDIA's configs port by changing
names, every mistake names its field path and what is allowed, upstream's precedence picks
the config of each device, and prepare refuses what it cannot honour instead of ignoring it."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.catalogue.catalogue import build_catalogue
from gpudra.kubeletplugin.prepare import ClaimRef, resolve_claim
from gpudra.kubeletplugin.prepare_errors import ErrorType, PrepareError
from gpudra.kubeletplugin.sharing.claim_config import (
    ClaimConfigError,
    GpuConfig,
    Interval,
    MigDeviceConfig,
    Strategy,
    allocation_configs,
    config_for,
    parse,
)
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.scenarios import DRIVER, NODE, claim, result

WHERE = "spec.devices.config[0].opaque.parameters"


def nvidia_ported(sharing: dict[str, Any], kind: str = "GpuConfig") -> dict[str, Any]:
    """NVIDIA's documented example with only the apiVersion changed."""
    return {"apiVersion": "resource.gpudra.io/v1beta1", "kind": kind, "sharing": sharing}


def test_nvidias_time_slicing_and_mps_examples_port_by_renaming() -> None:
    ts = parse(
        nvidia_ported({"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}), WHERE
    )
    assert isinstance(ts, GpuConfig) and ts.sharing is not None
    assert ts.sharing.strategy is Strategy.TIME_SLICING
    assert ts.sharing.time_slicing_config is not None
    assert ts.sharing.time_slicing_config.interval is Interval.LONG
    mps = parse(
        nvidia_ported(
            {
                "strategy": "MPS",
                "mpsConfig": {
                    "defaultActiveThreadPercentage": 50,
                    "defaultPinnedDeviceMemoryLimit": "10Gi",
                    "defaultPerDevicePinnedMemoryLimit": {"0": "5Gi"},
                },
            }
        ),
        WHERE,
    )
    assert isinstance(mps, GpuConfig) and mps.sharing and mps.sharing.mps_config
    assert mps.sharing.mps_config.default_active_thread_percentage == 50
    mig = parse(nvidia_ported({"strategy": "MPS"}, kind="MigDeviceConfig"), WHERE)
    assert isinstance(mig, MigDeviceConfig)


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        (
            nvidia_ported({"strategy": "MPS", "mpsConfg": {}}),
            f"{WHERE}.sharing.mpsConfg: unknown field",
        ),
        (
            {**nvidia_ported({"strategy": "MPS"}), "apiVersion": "resource.nvidia.com/v1beta1"},
            f"{WHERE}.apiVersion: resource.nvidia.com/v1beta1 is NVIDIA's driver's; for gpudra "
            "use resource.gpudra.io/v1beta1",
        ),
        (
            {**nvidia_ported({"strategy": "MPS"}), "apiVersion": "v1"},
            f"{WHERE}.apiVersion: 'v1' is not allowed; allowed: resource.gpudra.io/v1beta1",
        ),
        (
            nvidia_ported({"strategy": "MPS"}, kind="GPUConfig"),
            f"{WHERE}.kind: 'GPUConfig' is not allowed; allowed: GpuConfig, MigDeviceConfig",
        ),
        (
            nvidia_ported({"strategy": "Sliced"}),
            f"{WHERE}.sharing.strategy: 'Sliced' is not allowed; allowed: 'TimeSlicing' or 'MPS'",
        ),
        (
            nvidia_ported({"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Tiny"}}),
            f"{WHERE}.sharing.timeSlicingConfig.interval: 'Tiny' is not allowed; allowed: "
            "'Default', 'Short', 'Medium' or 'Long'",
        ),
        (
            nvidia_ported({"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 150}}),
            f"{WHERE}.sharing.mpsConfig.defaultActiveThreadPercentage: must be an integer "
            "from 1 to 100",
        ),
        (
            nvidia_ported(
                {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "1Ki"}}
            ),
            f"{WHERE}.sharing.mpsConfig.defaultPinnedDeviceMemoryLimit: must be a quantity of "
            "at least 1Mi (the smallest limit MPS takes), e.g. 10Gi",
        ),
        (
            nvidia_ported(
                {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "ten"}}
            ),
            f"{WHERE}.sharing.mpsConfig.defaultPinnedDeviceMemoryLimit: must be a quantity",
        ),
        (
            nvidia_ported(
                {
                    "strategy": "MPS",
                    "mpsConfig": {"defaultPerDevicePinnedMemoryLimit": {"gpu0": "1Gi"}},
                }
            ),
            "key 'gpu0' is neither a device UUID (GPU-..., MIG-...) nor an index",
        ),
        (
            nvidia_ported({"strategy": "TimeSlicing", "mpsConfig": {}}),
            f"{WHERE}.sharing: mpsConfig goes with strategy MPS, not TimeSlicing",
        ),
        (
            nvidia_ported({"strategy": "MPS", "timeSlicingConfig": {}}),
            f"{WHERE}.sharing: timeSlicingConfig goes with strategy TimeSlicing, not MPS",
        ),
        ("text", f"{WHERE}: must be an object with apiVersion and kind"),
    ],
)
def test_every_mistake_names_the_field_and_what_is_allowed(parameters: Any, error: str) -> None:
    with pytest.raises(ClaimConfigError) as e:
        parse(parameters, WHERE)
    assert error in str(e.value), str(e.value)


def gpu_config(sharing: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "resource.gpudra.io/v1beta1", "kind": "GpuConfig"}
    if sharing is not None:
        body["sharing"] = sharing
    return body


def entry(parameters: Any, source: str = "FromClaim", requests: list[str] | None = None,
          driver: str = DRIVER) -> dict[str, Any]:  # fmt: skip
    e: dict[str, Any] = {"source": source, "opaque": {"driver": driver, "parameters": parameters}}
    if requests is not None:
        e["requests"] = requests
    return e


def test_claim_over_class_later_over_earlier_per_request() -> None:
    ts = {"strategy": "TimeSlicing"}
    mps = {"strategy": "MPS"}
    configs = [
        entry(gpu_config(ts), source="FromClass"),
        entry({"whatever": 1}, driver="net.example.com"),  # not ours: not read
        entry(gpu_config(mps), requests=["train"]),
        entry(gpu_config(), requests=["infer/small"]),
    ]
    entries = allocation_configs(configs, DRIVER)
    assert [e.where for e in entries] == [
        "DeviceClass config[0].opaque.parameters",
        "spec.devices.config[1].opaque.parameters",
        "spec.devices.config[2].opaque.parameters",
    ]

    def strategy(request: str) -> str | None:
        e = config_for(entries, request, mig=False)
        assert e is not None
        s = e.config.sharing
        return s.strategy.value if s else None

    assert strategy("other") == "TimeSlicing"  # the class's, for every request
    assert strategy("train") == "MPS"  # the claim's wins over the class's
    assert strategy("train/h100") == "MPS"  # a request covers its subrequests
    assert strategy("infer/small") is None  # the last one for it: no sharing
    assert strategy("infer/big") == "TimeSlicing"
    assert config_for(entries, "other", mig=True) is None  # a GpuConfig says nothing of MIG


def test_a_config_of_the_wrong_kind_for_its_request_is_an_error() -> None:
    entries = allocation_configs([entry(gpu_config(), requests=["slice"])], DRIVER)
    with pytest.raises(ClaimConfigError, match="GpuConfig cannot configure request 'slice', which "
                       "was allocated a MIG device; use MigDeviceConfig"):  # fmt: skip
        config_for(entries, "slice", mig=True)


def test_a_bad_config_of_ours_is_reported_even_without_devices_of_its_request() -> None:
    with pytest.raises(ClaimConfigError, match=r"spec.devices.config\[0\].opaque.parameters.kind"):
        allocation_configs(
            [entry({"apiVersion": "resource.gpudra.io/v1beta1"}, requests=["x"])], DRIVER
        )


CATALOGUE = build_catalogue(MockBackend(load_machine("dgx-h100"), node_name=NODE).inventory())
REF = ClaimRef(namespace="ns", name="c", uid="uid-1")


def with_config(*configs: dict[str, Any]) -> dict[str, Any]:
    c = claim(result("gpu-1"))
    c["status"]["allocation"]["devices"]["config"] = list(configs)
    return c


def resolve(c: dict[str, Any]) -> Any:
    return resolve_claim(c, REF, driver=DRIVER, node_name=NODE, catalogue=CATALOGUE)


def test_prepare_fails_a_malformed_config_with_its_path() -> None:
    bad = gpu_config({"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 0}})
    with pytest.raises(PrepareError) as e:
        resolve(with_config(entry(bad)))
    assert e.value.kind is ErrorType.INVALID_CONFIG
    assert (
        "invalid config: spec.devices.config[0].opaque.parameters.sharing.mpsConfig"
        ".defaultActiveThreadPercentage: must be an integer from 1 to 100"
    ) in str(e.value)


def test_prepare_refuses_mps_it_cannot_honour_instead_of_ignoring_it() -> None:
    c = claim(result("gpu-1", "train"), result("gpu-2", "other"))
    c["status"]["allocation"]["devices"]["config"] = [
        entry(gpu_config({"strategy": "MPS"}), requests=["train"])
    ]
    with pytest.raises(PrepareError) as e:
        resolve_claim(c, REF, driver=DRIVER, node_name=NODE, catalogue=CATALOGUE, mps_root="/p/mps")
    assert e.value.kind is ErrorType.UNSUPPORTED_CONFIG
    assert "spec.devices.config[0].opaque.parameters asks for MPS but device(s) gpu-2 of " \
        "the same claim are not shared with MPS" in str(e.value)  # fmt: skip
    with pytest.raises(PrepareError) as e:  # a node without MPS: refused, never ignored
        resolve(with_config(entry(gpu_config({"strategy": "MPS"}))))
    assert e.value.kind is ErrorType.UNSUPPORTED_CONFIG
    assert "sharing.strategy: MPS is not enabled on this node" in str(e.value)


def test_time_slicing_is_what_prepare_will_set_on_whole_gpus() -> None:
    long = {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}
    got = resolve(with_config(entry(gpu_config(long))))
    assert [(d.device, d.time_slice) for d in got.devices] == [("gpu-1", "Long")]
    got = resolve(with_config(entry(gpu_config({"strategy": "TimeSlicing"}))))
    assert got.devices[0].time_slice == "Default"  # no interval: the driver's default
    assert resolve(with_config(entry(gpu_config()))).devices[0].time_slice == ""


def test_a_config_without_sharing_prepares() -> None:
    got = resolve(with_config(entry(gpu_config()), entry({"x": 1}, driver="other.example.com")))
    assert [d.device for d in got.devices] == ["gpu-1"]
