"""``gpudra kubelet-plugin`` refuses bad settings in one line before touching anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.cli.main import main

CASES = {
    "bad driver": (
        ["--driver-name", "GPU_Driver!"],
        "driver_name: Value error, 'GPU_Driver!' "
        "is not a valid driver name: a lowercase DNS subdomain",
    ),
    "mock without profile": (
        ["--backend", "mock"],
        "the mock backend needs exactly one of profile or profile_file",
    ),
    "bad backend": (["--backend", "cuda"], "backend must be 'nvml' or 'mock', not 'cuda'"),
    "no node name": ([], "node_name: Field required"),
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
