"""``gpudra kubelet-plugin`` refuses bad settings in one line before touching anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.cli.main import main

CASES = {
    "bad driver": (
        ["--driver-name", "GPU_Driver!"],
        "invalid settings: driver_name: 'GPU_Driver!' "
        "is not a valid driver name: a lowercase DNS subdomain",
    ),
    "mock without profile": (
        ["--backend", "mock"],
        "the mock backend needs exactly one of profile or profile_file",
    ),
    "bad backend": (["--backend", "cuda"], "backend must be 'nvml' or 'mock', not 'cuda'"),
    "no node name": ([], "node_name: Field required"),
    "one share": (
        ["--gpu-shares", "1"],
        "invalid settings: gpu_shares: must be 0 (no shares capacity) or 2..48 (the claims "
        "that can share one GPU), got 1",
    ),
    "49 shares": (["--gpu-shares", "49"], "gpu_shares: must be 0 (no shares capacity) or 2..48"),
    "bad shared gpus": (["--shared-gpus", "0-x"], "shared_gpus: invalid GPU set '0-x'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_settings(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUDRA_NODE_NAME", raising=False)
    args, message = CASES[case]
    if case != "no node name":
        args = ["--node-name", "n1", *args]
    code = main(["kubelet-plugin", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "kubelet-plugin",
            "--node-name",
            "n1",
            "--backend",
            "mock",
            "--profile",
            "pcie-l4",
            "--kubeconfig",
            str(tmp_path / "nope"),
            "--plugin-dir",
            str(tmp_path / "p"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot load kubeconfig" in err and str(tmp_path / "nope") in err


def test_env_settings_apply(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("GPUDRA_NODE_NAME", "from-env")
    monkeypatch.setenv("GPUDRA_BACKEND", "mock")
    code = main(["kubelet-plugin"])
    assert code == 2
    assert "the mock backend needs exactly one of profile" in capsys.readouterr().err


def test_config_file_sets_per_node_gpu_modes(tmp_path: Path) -> None:
    from gpudra.cli.kubelet_plugin import settings_from
    from gpudra.cli.main import parser

    cfg = tmp_path / "node.yaml"
    cfg.write_text(
        "nodeName: n7\nbackend: mock\nprofile: dgx-h100-mig\n"
        "dynamic-mig-gpus: 0-3\ncontrollerManagedGpus: all\n"
    )
    args = parser().parse_args(["kubelet-plugin", "--config", str(cfg), "--profile", "dgx-h100"])
    s = settings_from(args)
    assert (s.node_name, str(s.dynamic_mig_gpus), str(s.controller_managed_gpus)) == (
        "n7",
        "0-3",
        "all",
    )
    assert s.profile == "dgx-h100"  # a flag beats the file


def test_config_file_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("nodeName: n7\ndynamicMigGPUS: all\n")
    assert main(["kubelet-plugin", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        str(cfg) in err and "unknown setting 'dynamicMigGPUS'" in err and "dynamic_mig_gpus" in err
    )


class _NodeOnly:
    """gpudra's KubeClient boundary, answering only the node lookup."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def get(self, res: object, name: str) -> dict[str, object]:
        return {"metadata": {"name": name, "labels": self.labels}}


def test_a_node_label_naming_an_unknown_profile_is_reported_with_its_source() -> None:
    from gpudra.cli.kubelet_plugin import _serve
    from gpudra.nvml.errors import ProfileError
    from gpudra.settings import KubeletPluginSettings

    s = KubeletPluginSettings(
        node_name="n9",
        backend="mock",
        profile="dgx-h100",
        profile_node_label="gpudra.io/mock-profile",
    )
    with pytest.raises(ProfileError) as e:
        _serve(s, _NodeOnly({"gpudra.io/mock-profile": "dgx-h900"}))  # type: ignore[arg-type]
    msg = str(e.value)
    assert msg.startswith("node n9: profile 'dgx-h900' from node label gpudra.io/mock-profile:")
    assert "dgx1-v100" in msg  # the list of available profiles
