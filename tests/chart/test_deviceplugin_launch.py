"""The test kit's device-plugin launcher runs what the chart renders: the argv, env and config
file of the ``device-plugin`` DaemonSet, with this test node's directories (no process is
started here; the chart is rendered by the real helm CLI, like every test in tests/chart)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gpudra_testkit.harness.chart import gpudra_executable
from gpudra_testkit.harness.deviceplugin import (
    DevicePluginProcess,
    log_contains,
    plugin_socket_exists,
)


def test_launch_is_the_charts_device_plugin_container_with_this_nodes_dirs(
    tmp_path: Path,
) -> None:
    p = DevicePluginProcess("n1", "dgx1-v100", tmp_path)
    how = p.launch()
    config = p.files_dir / "config" / "config.yaml"
    assert how.argv == [gpudra_executable(), "device-plugin", f"--config={config}"]
    assert how.env == {"GPUDRA_NODE_NAME": "n1"}
    settings = yaml.safe_load(config.read_text())
    assert settings["kubeletDir"] == str(tmp_path)
    assert settings["cdiDir"] == str(tmp_path / "cdi")
    assert (settings["backend"], settings["profile"]) == ("mock", "dgx1-v100")
    assert settings["mockStateFile"] == str(p.state_file)


def test_values_and_extra_args_reach_the_process(tmp_path: Path) -> None:
    nvidia = {
        "version": "v1",
        "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 2}]}},
    }
    p = DevicePluginProcess(
        "n1",
        "dgx-h100",
        tmp_path,
        cdi_root=tmp_path / "elsewhere",
        values={"gpus": "4-7", "config": nvidia},
        extra_args=["--nvml-probe-interval-s=0.1"],
    )
    how = p.launch()
    nvidia_file = p.files_dir / "nvidia-config" / "nvidia-config.yaml"
    assert how.argv[1:] == [
        "device-plugin",
        f"--config={p.files_dir / 'config' / 'config.yaml'}",
        f"--device-plugin-config={nvidia_file}",
        "--nvml-probe-interval-s=0.1",
    ]
    assert yaml.safe_load(nvidia_file.read_text()) == nvidia
    settings = yaml.safe_load((p.files_dir / "config" / "config.yaml").read_text())
    assert (settings["gpus"], settings["cdiDir"]) == ("4-7", str(tmp_path / "elsewhere"))


def test_readiness_checks_look_at_the_sockets_and_the_log(tmp_path: Path) -> None:
    p = DevicePluginProcess("n1", "dgx-h100", tmp_path)
    p.device_plugin_dir.mkdir(parents=True)
    (p.device_plugin_dir / "kubelet.sock").touch()
    assert not plugin_socket_exists(p)
    (p.device_plugin_dir / "gpudra-gpu.sock").touch()
    assert plugin_socket_exists(p)
    assert not log_contains("serving")(p)
    p.log_file.write_text("... serving nvidia.com/gpu\n")
    assert log_contains("serving")(p)
    assert p.logs(tail=1) == "... serving nvidia.com/gpu"
