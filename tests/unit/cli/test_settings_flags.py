"""Flags derived from the settings models: names, types, defaults and help, and precedence.

The tables pin what users type and read; a flag that loses its default, help or type, or a
source that starts beating a higher one (flags > GPUDRA_* env > --config file > defaults),
fails here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from gpudra.catalogue.gpuset import GpuSet
from gpudra.cli import controller, kubelet_plugin
from gpudra.cli.main import main, parser
from gpudra.cli.settings_flags import SettingsError, add_flags, config_file_values, load_settings
from gpudra.settings import ControllerSettings, DevicePluginSettings, KubeletPluginSettings

REQUIRED = object()

# flag: (type, default, words of its help)
KUBELET_FLAGS: dict[str, tuple[type, Any, str]] = {
    "--kubeconfig": (Path, None, "kubeconfig file"),
    "--backend": (str, "nvml", "where GPUs come from: nvml"),
    "--profile": (str, None, "shipped machine profile"),
    "--profile-file": (Path, None, "machine profile YAML file"),
    "--mock-state-file": (Path, None, "MIG instances and faults"),
    "--clique-id": (str, None, "NVLink clique id"),
    "--driver-name": (str, "gpu.gpudra.io", "DRA driver name"),
    "--node-name": (str, REQUIRED, "this node's name"),
    "--plugin-dir": (Path, None, "default /var/lib/kubelet/plugins/<driver>"),
    "--registry-dir": (Path, Path("/var/lib/kubelet/plugins_registry"), "plugin registry dir"),
    "--cdi-dir": (Path, Path("/var/run/cdi"), "CDI spec dir"),
    "--profile-node-label": (str, None, "from its label of this key"),
    "--fake-dev-root": (Path, None, "stand-in /dev/nvidia* files"),
    "--gpus": (str, GpuSet(every=True, text="all"), "the GPUs this daemon serves"),
    "--gpu-lock-dir": (Path, None, "locked against the other daemon"),
    "--controller-managed-gpus": (str, GpuSet(), "only the gpudra controller allocates"),
    "--dynamic-mig-gpus": (str, GpuSet(), "dynamic MIG placements"),
    "--shared-gpus": (str, GpuSet(), "published for consumable capacity"),
    "--gpu-shares": (int, 0, "the count of claims that can share one GPU"),
    "--remove-unknown-mig": (bool, False, "destroy MIG instances"),
    "--metrics-port": (int, 0, "/metrics and /healthz (the DRA plugin: also /readyz)"),
    "--boot-id-file": (Path, Path("/proc/sys/kernel/random/boot_id"), "boot id"),
    "--gc-interval-s": (float, 60.0, "ResourceClaim is gone"),
    "--api-unreachable-s": (float, 300.0, "API server has not answered"),
    "--nvml-wedged-s": (float, 60.0, "NVML has not completed a call"),
    "--nvml-probe-interval-s": (float, 1.0, "NVML probe"),
    "--health-recovery-s": (float, 30.0, "has recovered for this long"),
    "--lost-gpu-taint-effect": (str, "NoExecute", "gpu.gpudra.io/gpu-lost taint"),
    "--health-stream": (bool, True, "allocatedResourcesStatus"),
    "--health-heartbeat-s": (float, 10.0, "three missed heartbeats"),
}

CONTROLLER_FLAGS: dict[str, tuple[type, Any, str]] = {
    "--kubeconfig": (Path, None, "kubeconfig file"),
    "--driver-name": (str, "gpu.gpudra.io", "pools must be named after their nodes"),
    "--interval-s": (float, 1.0, "most seconds between passes"),
    "--unschedulable-deadline-s": (float, 120.0, "before its claims are released"),
    "--metrics-port": (int, 0, "/metrics"),
    "--leader-elect": (bool, False, "Lease"),
    "--lease-namespace": (str, "kube-system", "$POD_NAMESPACE, else kube-system"),
    "--lease-name": (str, "gpudra-controller", "leader-election Lease"),
    "--once": (bool, False, "one pass, then exit"),
}
DEVICE_PLUGIN_FLAGS: dict[str, tuple[type, Any, str]] = {
    "--backend": (str, "nvml", "where GPUs come from: nvml"),
    "--profile": (str, None, "shipped machine profile"),
    "--profile-file": (Path, None, "machine profile YAML file"),
    "--mock-state-file": (Path, None, "MIG instances and faults"),
    "--clique-id": (str, None, "NVLink clique id"),
    "--node-name": (str, REQUIRED, "this node's name"),
    "--kubelet-dir": (Path, Path("/var/lib/kubelet"), "<dir>/device-plugins"),
    "--device-plugin-dir": (Path, None, "always uses /var/lib/kubelet/device-plugins"),
    "--cdi-dir": (Path, Path("/var/run/cdi"), "CDI spec dir"),
    "--resource-name": (str, "nvidia.com/gpu", "<domain>/mig-<profile>"),
    "--mig-strategy": (str, None, "single (identical MIG devices"),
    "--device-list-strategy": (str, None, "envvar (NVIDIA_VISIBLE_DEVICES)"),
    "--device-id-strategy": (str, None, "uuid or index"),
    "--pass-device-specs": (bool, None, "device nodes in the Allocate response"),
    "--device-plugin-config": (Path, None, "NVIDIA's k8s-device-plugin layout"),
    "--gpus": (str, GpuSet(every=True, text="all"), "served by the DRA plugin or the device"),
    "--gpu-lock-dir": (Path, None, "locked against the other daemon"),
    "--fake-dev-root": (Path, None, "stand-in /dev/nvidia* files"),
    "--nvml-probe-interval-s": (float, 1.0, "NVML probe"),
    "--nvml-wedged-s": (float, 60.0, "NVML has not completed a call"),
    "--health-recovery-s": (float, 30.0, "Healthy in ListAndWatch) once it has recovered"),
    "--metrics-port": (int, 0, "/metrics and /healthz"),
}
LEGACY = {"--interval": "--interval-s", "--unschedulable-deadline": "--unschedulable-deadline-s"}
# the node daemons' one NVML probe had two names; the device plugin's is kept as a spelling
NODE_LEGACY = {"--health-probe-interval-s": "--nvml-probe-interval-s"}

SAMPLES: dict[type, tuple[str, Any]] = {
    str: ("x", "x"),
    Path: ("/some/where", Path("/some/where")),
    int: ("9100", 9100),
    float: ("2.5", 2.5),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("GPUDRA_") or name == "POD_NAMESPACE":
            monkeypatch.delenv(name)


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    p: argparse.ArgumentParser = sub.choices[name]
    return p


def actions(name: str) -> dict[str, argparse.Action]:
    return {o: a for a in subcommand(name)._actions for o in a.option_strings}


def shown(default: Any) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


TABLES = {
    "kubelet-plugin": KUBELET_FLAGS,
    "controller": CONTROLLER_FLAGS,
    "device-plugin": DEVICE_PLUGIN_FLAGS,
}
ALL = [(cmd, flag) for cmd, table in TABLES.items() for flag in table]


@pytest.mark.parametrize("cmd", TABLES)
def test_the_flags_are_exactly_the_table(cmd: str) -> None:
    got = set(actions(cmd)) - {"-h", "--help", "--config"}
    want = set(TABLES[cmd]) | (set(LEGACY) if cmd == "controller" else set(NODE_LEGACY))
    assert got == want


@pytest.mark.parametrize(("cmd", "flag"), ALL, ids=[f"{c} {f}" for c, f in ALL])
def test_flag_type_help_and_default(cmd: str, flag: str) -> None:
    typ, default, words = TABLES[cmd][flag]
    action = actions(cmd)[flag]
    assert action.default is None  # absent: never hides the environment or the file
    assert action.help is not None and words in action.help
    if typ is bool:
        assert (action.const, action.nargs) == (True, 0)
        assert vars(parser().parse_args([cmd, flag]))[action.dest] is True
    else:
        assert action.type is typ
        raw, value = SAMPLES[typ]
        if flag == "--backend":
            raw, value = "mock", "mock"
        assert vars(parser().parse_args([cmd, flag, raw]))[action.dest] == value
    if default not in (REQUIRED, None, False) and flag != "--lease-namespace":
        assert f"(default {shown(default)})" in action.help


def defaults_of(cmd: str) -> Any:
    if cmd == "kubelet-plugin":
        return kubelet_plugin.settings_from(parser().parse_args([cmd, "--node-name", "n1"]))
    if cmd == "device-plugin":
        args = parser().parse_args([cmd, "--node-name", "n1"])
        return load_settings(DevicePluginSettings, args)
    return controller.settings_from(parser().parse_args([cmd]))


@pytest.mark.parametrize(("cmd", "flag"), ALL, ids=[f"{c} {f}" for c, f in ALL])
def test_a_missing_flag_takes_the_default(cmd: str, flag: str) -> None:
    _, default, _ = TABLES[cmd][flag]
    if default is REQUIRED:
        return
    dest = actions(cmd)[flag].dest
    assert getattr(defaults_of(cmd), dest) == default


@pytest.mark.parametrize(("legacy", "flag"), LEGACY.items())
def test_the_controllers_first_flag_spellings_still_work(legacy: str, flag: str) -> None:
    flags = actions("controller")
    assert flags[legacy] is flags[flag]


@pytest.mark.parametrize("cmd", ["kubelet-plugin", "device-plugin"])
def test_the_probes_older_name_still_works_as_a_flag_and_a_config_key(
    cmd: str, tmp_path: Path
) -> None:
    flags = actions(cmd)
    assert flags["--health-probe-interval-s"] is flags["--nvml-probe-interval-s"]
    model = KubeletPluginSettings if cmd == "kubelet-plugin" else DevicePluginSettings
    config = tmp_path / "config.yaml"
    config.write_text("healthProbeIntervalS: 5\n")
    assert config_file_values(model, config) == {"nvml_probe_interval_s": 5}


def test_the_chart_rendered_controller_args_parse() -> None:
    """As charts/gpudra/templates/controller-deployment.yaml renders them."""
    args = parser().parse_args(
        [
            "controller",
            "--driver-name=gpu.example.com",
            "--interval=0.3",
            "--unschedulable-deadline=90",
            "--metrics-port=8080",
            "--leader-elect",
            "--lease-namespace=gpu-ops",
            "--lease-name=gpudra-controller",
        ]
    )
    s = controller.settings_from(args)
    assert (s.driver_name, s.interval_s, s.unschedulable_deadline_s, s.metrics_port) == (
        "gpu.example.com",
        0.3,
        90.0,
        8080,
    )
    assert (s.leader_elect, s.lease_namespace, s.lease_name, s.once) == (
        True,
        "gpu-ops",
        "gpudra-controller",
        False,
    )


# --- precedence: flags > GPUDRA_* env > --config file > defaults ---------------------------

# setting: (flag, file key, default, flag value, env value, file value), each typed value
# distinct so the winner is visible
KUBELET_SOURCES: dict[str, tuple[str, str, Any, Any, Any, Any]] = {
    "metrics_port": ("--metrics-port", "metricsPort", 0, 9100, 9200, 9300),
    "gc_interval_s": ("--gc-interval-s", "gc-interval-s", 60.0, 1.5, 2.5, 3.5),
    "cdi_dir": ("--cdi-dir", "cdi_dir", Path("/var/run/cdi"), Path("/f"), Path("/e"), Path("/c")),
    "driver_name": ("--driver-name", "driverName", "gpu.gpudra.io", "a.io", "b.io", "c.io"),
    "dynamic_mig_gpus": (
        "--dynamic-mig-gpus",
        "dynamicMigGpus",
        GpuSet(),
        GpuSet.parse("0"),
        GpuSet.parse("1"),
        GpuSet.parse("2"),
    ),
    "shared_gpus": (
        "--shared-gpus",
        "sharedGpus",
        GpuSet(),
        GpuSet.parse("0-1"),
        GpuSet.parse("all"),
        GpuSet.parse("3"),
    ),
    "gpu_shares": ("--gpu-shares", "gpuShares", 0, 4, 8, 48),
}
CONTROLLER_SOURCES: dict[str, tuple[str, str, Any, Any, Any, Any]] = {
    "interval_s": ("--interval", "intervalS", 1.0, 2.0, 3.0, 4.0),
    "unschedulable_deadline_s": (
        "--unschedulable-deadline-s",
        "unschedulable-deadline-s",
        120.0,
        5.0,
        6.0,
        7.0,
    ),
    "lease_name": ("--lease-name", "leaseName", "gpudra-controller", "a", "b", "c"),
}

# scenario: which sources are given -> which wins
SCENARIOS = {
    "defaults alone": ((), "default"),
    "file over defaults": (("file",), "file"),
    "env over defaults": (("env",), "env"),
    "env over file": (("env", "file"), "env"),
    "flag over file": (("flag", "file"), "flag"),
    "flag over env": (("flag", "env"), "flag"),
    "flag over env over file": (("flag", "env", "file"), "flag"),
}

CASES = [
    (cmd, setting, scenario)
    for cmd, table in (("kubelet-plugin", KUBELET_SOURCES), ("controller", CONTROLLER_SOURCES))
    for setting in table
    for scenario in SCENARIOS
]


def load(
    cmd: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    flags: list[str],
    env: dict[str, str],
    file: dict[str, Any] | None,
) -> Any:
    argv = [cmd, *flags]
    if cmd == "kubelet-plugin":
        argv += ["--node-name", "n1"]
    if file is not None:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(file))
        argv += ["--config", str(cfg)]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = parser().parse_args(argv)
    return (kubelet_plugin if cmd == "kubelet-plugin" else controller).settings_from(args)


def raw(v: Any) -> Any:
    return str(v) if isinstance(v, Path | GpuSet) else v


@pytest.mark.parametrize(("cmd", "setting", "scenario"), CASES, ids=[" ".join(c) for c in CASES])
def test_precedence(
    cmd: str, setting: str, scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = KUBELET_SOURCES if cmd == "kubelet-plugin" else CONTROLLER_SOURCES
    flag, key, default, by_flag, by_env, by_file = table[setting]
    given, winner = SCENARIOS[scenario]
    s = load(
        cmd,
        tmp_path,
        monkeypatch,
        flags=[flag, str(by_flag)] if "flag" in given else [],
        env={f"GPUDRA_{setting.upper()}": str(by_env)} if "env" in given else {},
        file={key: raw(by_file)} if "file" in given else None,
    )
    want = {"default": default, "flag": by_flag, "env": by_env, "file": by_file}[winner]
    assert getattr(s, setting) == want


def test_a_switch_the_environment_turns_off_beats_the_file_and_loses_to_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def remove(flags: list[str], env: dict[str, str]) -> bool:
        s = load(
            "kubelet-plugin",
            tmp_path,
            monkeypatch,
            flags=flags,
            env=env,
            file={"removeUnknownMig": True},
        )
        return bool(s.remove_unknown_mig)

    assert remove([], {}) is True
    assert remove([], {"GPUDRA_REMOVE_UNKNOWN_MIG": "false"}) is False
    assert remove(["--remove-unknown-mig"], {"GPUDRA_REMOVE_UNKNOWN_MIG": "false"}) is True


def test_an_env_variable_hides_only_its_own_file_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load(
        "kubelet-plugin",
        tmp_path,
        monkeypatch,
        flags=[],
        env={"GPUDRA_METRICS_PORT": "9200"},
        file={"metricsPort": 9300, "gcIntervalS": 5},
    )
    assert (s.metrics_port, s.gc_interval_s) == (9200, 5.0)


def test_the_controller_refuses_an_unknown_config_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval: 2\n")
    assert main(["controller", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'interval'" in err and "interval_s" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--interval", "0"], "interval_s: Input should be greater than 0"),
        (["--metrics-port", "70000"], "metrics_port: Input should be less than or equal to 65535"),
        (["--driver-name", "Bad_Name"], "driver_name: 'Bad_Name' is not a valid driver name"),
    ],
    ids=["interval", "metrics port", "driver name"],
)
def test_bad_controller_settings_are_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["controller", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


# --- the derivation itself ----------------------------------------------------------------


class _Odd(BaseModel):
    pair: tuple[int, int] = Field(default=(0, 0), description="two numbers")


class _Undocumented(BaseModel):
    n: int = 0


@pytest.mark.parametrize(
    ("model", "says"),
    [(_Odd, "setting pair: no command-line flag for type"), (_Undocumented, "setting n: a flag")],
    ids=["unsupported type", "no description"],
)
def test_a_field_that_cannot_be_a_flag_is_refused_when_the_parser_is_built(
    model: type[BaseModel], says: str
) -> None:
    with pytest.raises(TypeError, match=says):
        add_flags(argparse.ArgumentParser(), model)


def test_every_settings_field_is_a_flag() -> None:
    for cmd, model in (
        ("kubelet-plugin", KubeletPluginSettings),
        ("controller", ControllerSettings),
    ):
        dests = {a.dest for a in subcommand(cmd)._actions}
        assert set(model.model_fields) <= dests, cmd


def test_a_plain_model_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only pydantic-settings models read GPUDRA_*; discover's BackendSettings reads flags."""
    from gpudra.settings import BackendSettings

    monkeypatch.setenv("GPUDRA_BACKEND", "mock")
    s = load_settings(BackendSettings, argparse.Namespace())
    assert s.backend == "nvml"
    with pytest.raises(SettingsError, match="backend must be 'nvml' or 'mock', not 'cuda'"):
        load_settings(BackendSettings, argparse.Namespace(backend="cuda"))
