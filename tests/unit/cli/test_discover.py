"""``gpudra discover``: the outputs people and scripts read, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpudra.cli.main import main
from gpudra.devices.timeslice import Interval
from gpudra.nvml import real
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.nvml.fake_pynvml import two_linked


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["discover", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dgx1_json_reports_the_hybrid_cube_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--backend", "mock", "--profile", "dgx1-v100", "-o", "json")
    doc = json.loads(out)
    assert code == 0
    assert doc["gpuCount"] == 8 and len(doc["gpus"]) == 8
    pairs = doc["nvlink"]["pairs"]
    assert len(pairs) == 16
    assert sum(p["links"] == 2 for p in pairs) == 8
    assert {(p["a"], p["b"]) for p in pairs if p["links"] == 2} == {
        (0, 3),
        (0, 4),
        (1, 2),
        (1, 5),
        (2, 3),
        (4, 7),
        (5, 6),
        (6, 7),
    }
    assert doc["gpus"][0]["nvlinkPeers"] == [1, 2, 3, 4]


def test_table_is_aligned_and_has_a_topo_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--backend", "mock", "--profile", "dgx1-v100", "--node-name", "x")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("Node x: 8 GPU(s)")
    header = next(i for i, line in enumerate(lines) if line.startswith("IDX"))
    uuid_col = lines[header].index("UUID")
    assert all(line[uuid_col:].startswith("GPU-") for line in lines[header + 1 : header + 9])
    gpu0 = next(line for line in lines if line.startswith("GPU0 "))
    assert gpu0.split() == ["GPU0", "X", "NV1", "NV1", "NV2", "NV2", "SYS", "SYS", "SYS"]


def test_mig_placements_in_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--backend", "mock", "--profile", "dgx-h100", "-o", "yaml")
    doc = yaml.safe_load(out)
    assert code == 0
    assert doc["gpus"][0]["migPlacements"]["3g.40gb"] == ["0:4", "4:4"]
    assert doc["gpus"][0]["migMode"] == "disabled"


def test_table_lists_mig_placements(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--backend", "mock", "--profile", "dgx-h100")
    assert "MIG on GPU 0 (H100-80GB, mode disabled):" in out
    assert any(line.split()[:3] == ["3g.40gb", "0:4", "4:4"] for line in out.splitlines())
    assert "NVSwitch domain: GPUs [0, 1, 2, 3, 4, 5, 6, 7], 18 links per GPU, 900 GB/s" in out


BAD = {
    "unknown profile": (
        ["--backend", "mock", "--profile", "dgx-x"],
        "unknown mock profile 'dgx-x'; available: dgx-a100, dgx-h100",
    ),
    "mock without profile": (
        ["--backend", "mock"],
        "the mock backend needs exactly one of profile or profile_file "
        "(--profile NAME or --profile-file FILE)",
    ),
    "mock with both": (
        ["--backend", "mock", "--profile", "dgx-h100", "--profile-file", "x.yaml"],
        "the mock backend needs exactly one of profile or profile_file",
    ),
    "bad backend": (["--backend", "cuda"], "backend: backend must be 'nvml' or 'mock', not 'cuda'"),
    "profile with nvml": (
        ["--backend", "nvml", "--profile", "dgx-h100"],
        "--profile/--profile-file need --backend mock",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, message = BAD[case]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_malformed_profile_file_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\ngpuCount: many\n")
    code, _, err = run(capsys, "--backend", "mock", "--profile-file", str(f))
    assert code == 2
    assert str(f) in err and "gpuCount: Input should be a valid integer" in err
    assert "Traceback" not in err


def test_missing_nvml_library_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pynvml

    def no_library() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    code, out, err = run(capsys, "--backend", "nvml")
    assert code == 2 and out == ""
    assert err.strip() == (
        "gpudra discover: error: NVML library not found (libnvidia-ml.so.1); "
        "no NVIDIA driver here? use --backend mock"
    )


def test_real_process_without_traceback() -> None:
    """As a user runs it: a real process, the real pynvml.  Without a driver it must be one
    line and exit 2; on a GPU machine it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "gpudra", "discover", "--backend", "nvml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert proc.stdout.startswith("Node ")
    else:
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "NVML library not found" in proc.stderr


def test_time_slices_a_daemon_set_show_in_json_and_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """discover is a second process on the daemon's state file: it sees the daemon's set."""
    state = tmp_path / "state.json"
    daemon = MockBackend(load_machine("dgx-h100"), node_name="x", state_file=state)
    daemon.set_time_slice(daemon.inventory().gpus[2].uuid, Interval.LONG)
    args = ["--backend", "mock", "--profile", "dgx-h100", "--node-name", "x"]
    args += ["--mock-state-file", str(state)]
    code, out, _ = run(capsys, *args, "-o", "json")
    assert code == 0
    assert [g["timeSlice"] for g in json.loads(out)["gpus"]] == ["Default"] * 2 + ["Long"] + [
        "Default"
    ] * 5
    code, out, _ = run(capsys, *args)
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("IDX"))
    assert header.split()[-1] == "TIMESLICE"
    rows = [line.split() for line in lines if line[:2] in {f"{i} " for i in range(8)}]
    assert [r[-1] for r in rows] == ["Default"] * 2 + ["Long"] + ["Default"] * 5


def test_a_backend_that_cannot_read_time_slices_shows_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(real, "pynvml", two_linked())
    code, out, _ = run(capsys, "--backend", "nvml", "-o", "json")
    assert code == 0
    assert [g["timeSlice"] for g in json.loads(out)["gpus"]] == [None, None]
    _, out, _ = run(capsys, "--backend", "nvml")
    rows = [line.split() for line in out.splitlines() if line.startswith(("0 ", "1 "))]
    assert [r[-1] for r in rows] == ["-", "-"]
