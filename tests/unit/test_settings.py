"""The settings models: fields the chart and users rely on, validators, shared declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gpudra.catalogue.gpuset import GpuSet
from gpudra.settings import (
    MOCK_NEEDS_ONE_MACHINE,
    BackendSettings,
    ControllerSettings,
    DevicePluginSettings,
    KubeconfigSetting,
    KubeletPluginSettings,
    mock_machine_problem,
)

# the node daemon's settings are the chart's config keys (tests/chart pins the other side)
KUBELET_FIELDS = {
    "driver_name", "node_name", "kubeconfig", "plugin_dir", "registry_dir", "cdi_dir",
    "backend", "profile", "profile_file", "profile_node_label", "mock_state_file", "clique_id",
    "fake_dev_root", "controller_managed_gpus", "dynamic_mig_gpus", "remove_unknown_mig",
    "metrics_port", "boot_id_file", "gc_interval_s", "api_unreachable_s", "nvml_wedged_s",
    "nvml_probe_interval_s", "gpus", "gpu_lock_dir", "health_recovery_s",
    "lost_gpu_taint_effect",
    "health_stream",
    "health_heartbeat_s",
    "shared_gpus", "gpu_shares",
}  # fmt: skip
DEVICE_PLUGIN_FIELDS = {
    "node_name", "kubelet_dir", "device_plugin_dir", "cdi_dir", "resource_name", "mig_strategy",
    "device_list_strategy", "device_id_strategy", "pass_device_specs", "device_plugin_config",
    "gpus", "gpu_lock_dir", "fake_dev_root", "nvml_probe_interval_s", "nvml_wedged_s",
    "health_recovery_s",
    "metrics_port",
    "backend", "profile", "profile_file", "mock_state_file", "clique_id",
}  # fmt: skip
CONTROLLER_FIELDS = {
    "kubeconfig", "driver_name", "interval_s", "unschedulable_deadline_s", "metrics_port",
    "leader_elect", "lease_namespace", "lease_name", "once",
}  # fmt: skip

MODELS: list[type[BaseModel]] = [
    KubeletPluginSettings,
    DevicePluginSettings,
    ControllerSettings,
    BackendSettings,
    KubeconfigSetting,
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("GPUDRA_") or name == "POD_NAMESPACE":
            monkeypatch.delenv(name)


def test_the_node_daemons_settings_are_unchanged() -> None:
    assert set(KubeletPluginSettings.model_fields) == KUBELET_FIELDS


@pytest.mark.parametrize("shares", [1, 49, -2])
def test_gpu_shares_outside_0_and_2_to_48_are_refused_with_the_range(shares: int) -> None:
    with pytest.raises(ValidationError) as e:
        KubeletPluginSettings(node_name="n", gpu_shares=shares)
    (err,) = e.value.errors()
    assert err["loc"] == ("gpu_shares",)
    want = (
        f"must be 0 (no shares capacity) or 2..48 (the claims that can share one GPU), got {shares}"
    )
    assert want in str(e.value)


def test_shared_gpus_and_their_shares_default_to_none() -> None:
    s = KubeletPluginSettings(node_name="n")
    assert (s.shared_gpus, s.gpu_shares) == (GpuSet(), 0)
    for ok in (0, 2, 48):
        assert KubeletPluginSettings(node_name="n", gpu_shares=ok).gpu_shares == ok
    assert str(KubeletPluginSettings(node_name="n", shared_gpus="0-3").shared_gpus) == "0-3"


def test_the_device_plugins_settings() -> None:
    assert set(DevicePluginSettings.model_fields) == DEVICE_PLUGIN_FIELDS


def test_device_list_strategy_takes_nvidias_spellings_and_refuses_the_rest() -> None:
    s = DevicePluginSettings(node_name="n", device_list_strategy="envvar, cdi-cri")
    assert s.device_list_strategy == ("envvar", "cdi-cri")
    assert DevicePluginSettings(
        node_name="n", device_list_strategy=["cdi-cri"]
    ).device_list_strategy == ("cdi-cri",)
    with pytest.raises(ValidationError, match="'volume-mounts' is not supported: use envvar"):
        DevicePluginSettings(node_name="n", device_list_strategy="volume-mounts")
    with pytest.raises(ValidationError, match="'bogus' is unknown: allowed are envvar and cdi-cri"):
        DevicePluginSettings(node_name="n", device_list_strategy="envvar,bogus")


def test_the_device_plugin_paths_derive_from_the_kubelet_dir() -> None:
    s = DevicePluginSettings(node_name="n", kubelet_dir=Path("/k"), backend="mock", profile="x")
    assert s.kubelet_socket == Path("/k/device-plugins/kubelet.sock")
    assert s.gpu_lock_path == Path("/k/gpudra/gpus")
    assert s.dev_root == Path("/k/gpudra/device-plugin/fake-dev")
    # the DRA plugin's default lock dir is the same one, from its registry dir
    kp = KubeletPluginSettings(node_name="n", registry_dir=Path("/k/plugins_registry"))
    assert kp.gpu_lock_path == s.gpu_lock_path


def test_the_controllers_settings() -> None:
    assert set(ControllerSettings.model_fields) == CONTROLLER_FIELDS


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_setting_has_a_description_for_its_help(model: type[BaseModel]) -> None:
    assert all(f.description for f in model.model_fields.values())


def test_shared_fields_are_one_declaration() -> None:
    """The daemons inherit these fields; nothing restates them (FieldInfo is copied, so reprs)."""
    for name in BackendSettings.model_fields:
        assert repr(KubeletPluginSettings.model_fields[name]) == repr(
            BackendSettings.model_fields[name]
        )
    for model in (KubeletPluginSettings, ControllerSettings):
        assert issubclass(model, KubeconfigSetting)
        assert repr(model.model_fields["kubeconfig"]) == repr(
            KubeconfigSetting.model_fields["kubeconfig"]
        )


# backend, profile, profile_file -> refused?
MACHINE_CHOICES: dict[str, tuple[str, str | None, Path | None, bool]] = {
    "nvml": ("nvml", None, None, False),
    "nvml ignores a profile": ("nvml", "dgx-h100", None, False),
    "mock by name": ("mock", "dgx-h100", None, False),
    "mock by file": ("mock", None, Path("m.yaml"), False),
    "mock with neither": ("mock", None, None, True),
    "mock with both": ("mock", "dgx-h100", Path("m.yaml"), True),
}


@pytest.mark.parametrize("case", MACHINE_CHOICES)
def test_the_one_mock_machine_rule(case: str) -> None:
    backend, profile, profile_file, refused = MACHINE_CHOICES[case]
    problem = mock_machine_problem(backend, profile, profile_file)
    assert problem == (MOCK_NEEDS_ONE_MACHINE if refused else None)
    given: dict[str, Any] = {"backend": backend, "profile": profile, "profile_file": profile_file}
    for build in (
        lambda: BackendSettings(**given),
        lambda: KubeletPluginSettings(node_name="n1", **given),
    ):
        if refused:
            with pytest.raises(ValidationError, match=r"exactly one of profile or profile_file"):
                build()
        else:
            assert build().backend == backend


def test_an_unknown_backend_names_the_allowed_ones() -> None:
    with pytest.raises(ValidationError, match="backend must be 'nvml' or 'mock', not 'cuda'"):
        BackendSettings(backend="cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "required"),
    [(KubeletPluginSettings, {"node_name": "n1"}), (ControllerSettings, {})],
    ids=["kubelet-plugin", "controller"],
)
def test_both_daemons_check_the_driver_name_the_same_way(
    model: type[BaseModel], required: dict[str, str]
) -> None:
    with pytest.raises(ValidationError, match="'Bad_Name' is not a valid driver name"):
        model.model_validate({**required, "driver_name": "Bad_Name"})


def test_the_lease_namespace_defaults_to_the_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ControllerSettings().lease_namespace == "kube-system"
    monkeypatch.setenv("POD_NAMESPACE", "gpu-ops")
    assert ControllerSettings().lease_namespace == "gpu-ops"


def test_the_controller_reads_gpudra_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDRA_INTERVAL_S", "0.5")
    monkeypatch.setenv("GPUDRA_LEADER_ELECT", "true")
    s = ControllerSettings()
    assert (s.interval_s, s.leader_elect) == (0.5, True)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"interval_s": 0}, "interval_s"),
        ({"unschedulable_deadline_s": -1}, "unschedulable_deadline_s"),
        ({"lease_name": ""}, "lease_name"),
        ({"intervall": 1}, "intervall"),
    ],
    ids=["interval", "deadline", "lease name", "unknown key"],
)
def test_bad_controller_settings_name_the_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        ControllerSettings(**given)
    assert [err["loc"] for err in e.value.errors()] == [(field,)]
