"""The checkpoint is an API: v1 files stay readable, bad files are kept, never overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gpudra.kubeletplugin.checkpoint_store import CheckpointError, CheckpointStore
from gpudra.nodestate.checkpoint import PreparedClaim, PreparedDevice

GOLDEN = Path(__file__).parent / "data" / "checkpoint-v1.json"
UID = "2f1c0e4e-6d1a-4a55-9a0c-3c8e2f7b1d01"


def claim(uid: str = "u1", device: str = "gpu-0") -> PreparedClaim:
    return PreparedClaim(
        uid=uid,
        namespace="ns",
        name="c",
        state="prepared",
        devices=(
            PreparedDevice(
                request_names=("r",),
                pool="n",
                device=device,
                cdi_device_ids=(f"k/c={uid}-{device}",),
                uuid="GPU-x",
            ),
        ),
    )


def test_a_v1_checkpoint_written_by_this_version_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    shutil.copy(GOLDEN, path)
    store = CheckpointStore(path, node_name="node-a")
    got = store.get(UID)
    assert got is not None and got.state == "prepared"
    assert got.devices[0].device == "gpu-3" and got.devices[0].request_names == ("gpus",)
    assert store.recovered_from is None


def test_fields_added_by_a_newer_minor_are_ignored(tmp_path: Path) -> None:
    doc = json.loads(GOLDEN.read_text())
    doc["claims"][UID]["devices"][0]["migPlacement"] = "0:4"
    doc["futureField"] = {"x": 1}
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(doc))
    assert CheckpointStore(path, node_name="node-a").get(UID) is not None


def test_round_trip_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path, node_name="n")
    store.put(claim("a"))
    store.put(claim("b", "gpu-1"))
    store.remove("a")
    again = CheckpointStore(path, node_name="n")
    assert set(again.claims()) == {"b"}
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 1, "claims": {"x": ',
        "[]",
        '{"version": 99, "nodeName": "n", "claims": {}}',
        '{"version": 1, "nodeName": "n", "claims": {"a": 3}}',
    ],
)
def test_unreadable_checkpoint_is_kept_and_rebuilt(tmp_path: Path, content: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    store = CheckpointStore(path, node_name="n", rebuild=lambda: {"r": claim("r")})
    assert store.recovered_from is not None
    assert store.recovered_from.read_text() == content
    assert set(store.claims()) == {"r"}
    assert set(json.loads(path.read_text())["claims"]) == {"r"}


def test_write_failure_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "dir"
    store = CheckpointStore(blocker / "cp.json", node_name="n")
    blocker.write_text("now a file, not a directory")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        store.put(claim())
    assert store.claims() == {}


def test_unreadable_location_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*file/cp\.json"):
        CheckpointStore(tmp_path / "file" / "cp.json", node_name="n")


def test_a_new_boot_sends_every_claim_back_to_preparing(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path, node_name="n")
    assert store.begin_boot("boot-1") == []  # the first boot recorded: nothing to redo
    store.put(claim("u1"))
    store.put(claim("u2", "gpu-1"))
    assert store.begin_boot("boot-1") == []  # same boot (a daemon restart): untouched
    assert {c.state for c in store.claims().values()} == {"prepared"}

    again = CheckpointStore(path, node_name="n")  # the daemon after a reboot
    stale = again.begin_boot("boot-2")
    assert sorted(c.uid for c in stale) == ["u1", "u2"]
    assert {c.state for c in again.claims().values()} == {"preparing"}
    reread = json.loads(path.read_text())
    assert reread["bootId"] == "boot-2"
    assert {c["state"] for c in reread["claims"].values()} == {"preparing"}


def test_a_checkpoint_without_a_boot_id_is_not_taken_for_a_reboot(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    shutil.copy(GOLDEN, path)  # written before the boot id was recorded
    store = CheckpointStore(path, node_name="node-a")
    before = store.claims()
    assert store.begin_boot("boot-1") == []
    assert store.claims() == before
