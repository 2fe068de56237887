"""Claim spec files in the CDI directory: written whole or not at all, removed idempotently,
read back for recovery, and failures reported as `CdiWriteError` naming where and why."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from gpudra.cdi.spec import CLAIM_UID_ANNOTATION
from gpudra.cdi.writer import CdiWriteError, CdiWriter


def spec(uid: str, marker: str = "v1") -> dict[str, Any]:
    return {
        "cdiVersion": "0.6.0",
        "kind": "k8s.gpu.gpudra.io/claim",
        "annotations": {CLAIM_UID_ANNOTATION: uid, "test/marker": marker},
        "devices": [],
    }


@pytest.fixture
def writer(tmp_path: Path) -> CdiWriter:
    return CdiWriter(tmp_path / "cdi")


def test_write_creates_the_directory_and_a_world_readable_json_file(writer: CdiWriter) -> None:
    path = writer.write("u1", spec("u1"))

    assert path == writer.cdi_dir / "k8s.gpu.gpudra.io-claim_u1.json"
    assert json.loads(path.read_text()) == spec("u1")
    # the runtime reads it; nobody but the daemon writes it
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_replaces_the_previous_spec_and_leaves_no_temp_files(writer: CdiWriter) -> None:
    writer.write("u1", spec("u1", "v1"))
    writer.write("u1", spec("u1", "v2"))

    assert [p.name for p in writer.cdi_dir.iterdir()] == ["k8s.gpu.gpudra.io-claim_u1.json"]
    assert writer.read_all()["u1"]["annotations"]["test/marker"] == "v2"


def test_a_failed_write_keeps_the_old_spec_whole(
    writer: CdiWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = writer.write("u1", spec("u1", "old"))
    before = path.read_bytes()

    def no_rename(self: Path, target: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", no_rename)
    with pytest.raises(CdiWriteError) as err:
        writer.write("u1", spec("u1", "new"))
    monkeypatch.undo()

    assert str(err.value) == (
        f"cannot write CDI spec {path.name} to {writer.cdi_dir}: No space left on device"
    )
    assert path.read_bytes() == before
    assert [p.name for p in writer.cdi_dir.iterdir()] == [path.name]  # temp file cleaned up


def test_a_cdi_directory_that_cannot_exist_is_a_cdi_write_error(tmp_path: Path) -> None:
    # a file where the directory should be: fails even as root, unlike a chmod
    (tmp_path / "cdi").write_text("not a directory")
    writer = CdiWriter(tmp_path / "cdi" / "sub")

    with pytest.raises(CdiWriteError) as err:
        writer.write("u1", spec("u1"))

    message = str(err.value)
    assert message.startswith(
        f"cannot write CDI spec k8s.gpu.gpudra.io-claim_u1.json to {tmp_path}"
    )
    assert message.endswith("Not a directory")
    assert isinstance(err.value.__cause__, OSError)


def test_remove_is_idempotent(writer: CdiWriter) -> None:
    writer.write("u1", spec("u1"))

    assert writer.remove("u1") is True
    assert writer.remove("u1") is False
    assert not writer.path("u1").exists()
    assert CdiWriter(writer.cdi_dir / "never-created").remove("u1") is False


def test_remove_failure_is_a_cdi_write_error_naming_the_claim_and_directory(
    writer: CdiWriter,
) -> None:
    writer.path("u1").mkdir(parents=True)  # a directory where the file should be

    with pytest.raises(CdiWriteError) as err:
        writer.remove("u1")

    assert str(err.value).startswith(
        f"cannot remove CDI spec {writer.path('u1').name} of claim u1 from {writer.cdi_dir}: "
    )


def test_read_all_returns_each_claims_spec_by_uid(writer: CdiWriter) -> None:
    writer.write("u1", spec("u1"))
    writer.write("u2", spec("u2"))

    assert writer.read_all() == {"u1": spec("u1"), "u2": spec("u2")}


def test_read_all_skips_what_is_not_a_readable_gpudra_claim_spec(writer: CdiWriter) -> None:
    writer.write("good", spec("good"))
    d = writer.cdi_dir
    (d / "k8s.gpu.gpudra.io-claim_torn.json").write_text('{"cdiVersion": ')
    (d / "k8s.gpu.gpudra.io-claim_anon.json").write_text(json.dumps({"kind": "x/y"}))
    (d / "nvidia.com-gpu.json").write_text(json.dumps(spec("other-vendor")))  # not ours
    (d / "k8s.gpu.gpudra.io-claim_dir.json").mkdir()

    assert set(writer.read_all()) == {"good"}


def test_read_all_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert CdiWriter(tmp_path / "absent").read_all() == {}


def test_read_all_skips_a_spec_that_is_json_but_not_an_object(writer: CdiWriter) -> None:
    """Recovery reads these files: a list (or a spec with non-object annotations) used to
    raise AttributeError out of read_all and fail the daemon's start."""
    writer.write("good", spec("good"))
    (writer.cdi_dir / "k8s.gpu.gpudra.io-claim_list.json").write_text("[]")
    (writer.cdi_dir / "k8s.gpu.gpudra.io-claim_odd.json").write_text('{"annotations": [1]}')

    assert set(writer.read_all()) == {"good"}
