"""``gpudra explain`` offline: best placement and runner-up, explanations, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpudra.cli.main import main
from gpudra_testkit.builders import profile_slices

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def cluster_dirs(tmp_path: Path) -> tuple[Path, Path]:
    slices, classes = tmp_path / "slices", tmp_path / "classes"
    slices.mkdir()
    classes.mkdir()
    for name, profile in (("v100-node", "dgx1-v100"), ("l4-node", "pcie-l4")):
        docs = [
            dict(s, apiVersion="resource.k8s.io/v1", kind="ResourceSlice")
            for s in profile_slices(profile, name)
        ]
        (slices / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    (classes / "classes.yaml").write_text((REPO / "deploy" / "deviceclasses.yaml").read_text())
    return slices, classes


def claim_file(tmp_path: Path, requests: list[dict], constraints: list[dict] | None = None) -> Path:
    f = tmp_path / "claim.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": "mine", "namespace": "team"},
                "spec": {"devices": {"requests": requests, "constraints": constraints or []}},
            }
        )
    )
    return f


def run(capsys: pytest.CaptureFixture[str], f: Path, dirs: tuple[Path, Path], *extra: str):
    code = main(
        ["explain", "-f", str(f), "--slices", str(dirs[0]), "--classes", str(dirs[1]), *extra]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_example_template_gets_a_double_nvlink_pair(
    capsys: pytest.CaptureFixture[str], cluster_dirs: tuple[Path, Path]
) -> None:
    example = REPO / "deploy" / "examples" / "nvlink-pair.yaml"
    only_template = cluster_dirs[0].parent / "t.yaml"
    only_template.write_text(yaml.safe_dump(next(yaml.safe_load_all(example.read_text()))))
    code, out, _ = run(capsys, only_template, cluster_dirs, "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["feasible"] and doc["node"] == "v100-node"
    devices = sorted(r["device"] for r in doc["results"]["default/nvlink-pair"])
    assert devices in (
        ["gpu-0", "gpu-3"],
        ["gpu-1", "gpu-2"],
        ["gpu-2", "gpu-3"],
        ["gpu-4", "gpu-7"],
        ["gpu-5", "gpu-6"],
        ["gpu-6", "gpu-7"],
    )
    assert doc["runnerUp"] is not None


def test_text_output_names_best_and_runner_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster_dirs: tuple[Path, Path]
) -> None:
    f = claim_file(
        tmp_path, [{"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io", "count": 4}}]
    )
    code, out, _ = run(capsys, f, cluster_dirs)
    assert code == 0
    assert out.startswith("best: node v100-node  (score ")
    assert "bandwidth share (450 GB/s)" in out
    assert "runner-up: node " in out


def test_unplaceable_claim_is_explained_per_node_and_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster_dirs: tuple[Path, Path]
) -> None:
    sel = "device.attributes['gpu.gpudra.io'].architecture == 'Hopper'"
    f = claim_file(
        tmp_path,
        [
            {
                "name": "g",
                "exactly": {
                    "deviceClassName": "gpu.gpudra.io",
                    "count": 2,
                    "selectors": [{"cel": {"expression": sel}}],
                },
            }
        ],
    )
    code, out, _ = run(capsys, f, cluster_dirs)
    assert code == 1
    assert "cannot allocate team/mine on any of 2 node(s):" in out
    assert "node v100-node: 8 device(s)" in out and "node l4-node: 4 device(s)" in out
    assert f"rejected 8 selector {sel!r} is false" in out


BAD = {
    "unknown class": (
        {"deviceClassName": "tpu.example.com"},
        "device class 'tpu.example.com' does not exist",
    ),
    "invalid CEL": (
        {
            "deviceClassName": "gpu.gpudra.io",
            "selectors": [{"cel": {"expression": "device.driver == "}}],
        },
        "invalid CEL selector",
    ),
    "count over the API limit": (
        {"deviceClassName": "gpu.gpudra.io", "count": 64},
        "count 64; allowed: 1..32",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_claims_are_one_line_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster_dirs: tuple[Path, Path]
) -> None:
    body, message = BAD[case]
    code, out, err = run(
        capsys, claim_file(tmp_path, [{"name": "g", "exactly": body}]), cluster_dirs
    )
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "team/mine" in err


def test_invalid_cel_reports_the_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster_dirs: tuple[Path, Path]
) -> None:
    f = claim_file(
        tmp_path,
        [
            {
                "name": "g",
                "exactly": {
                    "deviceClassName": "gpu.gpudra.io",
                    "selectors": [{"cel": {"expression": "device.driver == 'x' &&"}}],
                },
            }
        ],
    )
    _, _, err = run(capsys, f, cluster_dirs)
    assert any(w in err for w in ("column", "position", ":1:")), err


def test_missing_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = claim_file(tmp_path, [{"name": "g", "exactly": {"deviceClassName": "gpu.gpudra.io"}}])
    code = main(["explain", "-f", str(f)])
    assert code == 2
    assert "give --kubeconfig, or both --slices DIR and --classes DIR" in capsys.readouterr().err
