"""``--shared-gpus`` in the node daemon: the GPUs that fall back to plain devices are logged
with the reason, counted in ``gpudra_node_shared_gpus``, and the rest are published shared."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gpudra.catalogue.gpuset import GpuSet, GpuSetError
from gpudra.kubeletplugin.daemon import KubeletPluginDaemon
from gpudra.metrics.node import NodeMetrics
from gpudra.nodeagent.catalogue_source import CatalogueSource
from gpudra.nvml.mock import MockBackend, load_machine
from tests.unit.kubeletplugin.test_daemon_faults import NODE, FlakyClient, settings

MIXED = "dgx-h100-mixed"  # GPUs 1, 4-7 in MIG mode
SOURCE_LOG = "gpudra.nodeagent.catalogue_source"


def source(tmp_path: Path, minor: int, *, dynamic: str = "") -> CatalogueSource:
    backend = MockBackend(load_machine(MIXED), node_name=NODE, state_file=tmp_path / "s.json")
    return CatalogueSource(
        backend.inventory,
        lambda: (1, minor),
        dynamic_mig=GpuSet.parse(dynamic or None),
        managed=GpuSet(),
        shared=GpuSet.parse("0-5"),
        shares=4,
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == SOURCE_LOG and r.levelno == logging.WARNING
    ]


def test_each_gpu_that_is_not_shared_is_logged_with_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SOURCE_LOG)
    src = source(tmp_path, 35, dynamic="0")
    c = src.current()
    assert c.shared_refused == frozenset({0, 1, 2, 3, 4, 5})
    said = warnings(caplog)
    assert said == [
        "--shared-gpus: GPU 0 is not shared: it is in dynamic-MIG mode (--dynamic-mig-gpus), "
        "which wins; publishing MIG devices",
        "--shared-gpus: GPU 1 is not shared: it is in MIG mode; publishing its MIG instances, "
        "one claim per instance",
        "--shared-gpus: GPU 2 is not shared: Kubernetes 1.35 is older than 1.36 (consumable "
        "capacity is off there); publishing plain devices, one claim per GPU",
        "--shared-gpus: GPU 3 is not shared: Kubernetes 1.35 is older than 1.36 (consumable "
        "capacity is off there); publishing plain devices, one claim per GPU",
        "--shared-gpus: GPU 4 is not shared: it is in MIG mode; publishing its MIG instances, "
        "one claim per instance",
        "--shared-gpus: GPU 5 is not shared: it is in MIG mode; publishing its MIG instances, "
        "one claim per instance",
    ]
    caplog.clear()
    assert src.current() is c and warnings(caplog) == []  # said once, when the modes change


def test_on_136_only_the_mig_gpus_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SOURCE_LOG)
    c = source(tmp_path, 36).current()
    assert [str(m) for m in c.modes[:6]] == [
        "shared",
        "static-mig",
        "shared",
        "shared",
        "static-mig",
        "static-mig",
    ]
    said = warnings(caplog)
    assert [m.split(": ")[1] for m in said] == [f"GPU {i} is not shared" for i in (1, 4, 5)]
    assert all("in MIG mode" in m for m in said)


@pytest.mark.parametrize(
    ("minor", "published", "fallback"),
    [(37, 3, 3), (35, 0, 6)],
    ids=["1.37", "1.35"],
)
def test_the_daemon_publishes_shared_gpus_and_counts_them(
    tmp_path: Path, minor: int, published: int, fallback: int
) -> None:
    s = settings(tmp_path, profile=MIXED, shared_gpus="0-5", gpu_shares=4)
    backend = MockBackend(load_machine(MIXED), node_name=NODE, state_file=s.mock_state_file)
    client = FlakyClient(minor=minor)
    metrics = NodeMetrics()
    for state in ("published", "fallback"):  # created at zero
        assert metrics.registry.get_sample_value("gpudra_node_shared_gpus", {"state": state}) == 0
    daemon = KubeletPluginDaemon(s, client=client, backend=backend, metrics=metrics)  # type: ignore[arg-type]
    try:
        daemon.publisher.sync()
    finally:
        daemon.stop()

    def gauge(state: str) -> float | None:
        return metrics.registry.get_sample_value("gpudra_node_shared_gpus", {"state": state})

    assert (gauge("published"), gauge("fallback")) == (published, fallback)
    devices = {d["name"]: d for sl in client.created for d in sl["spec"].get("devices", [])}
    multi = sorted(n for n, d in devices.items() if d.get("allowMultipleAllocations"))
    assert multi == (["gpu-0", "gpu-2", "gpu-3"] if published else [])
    for name in multi:
        assert devices[name]["capacity"]["shares"]["value"] == "4"


def test_a_shared_gpu_the_node_lacks_stops_the_daemon(tmp_path: Path) -> None:
    s = settings(tmp_path, shared_gpus="9")
    backend = MockBackend(load_machine("dgx-h100"), node_name=NODE, state_file=s.mock_state_file)
    with pytest.raises(GpuSetError, match="invalid settings: shared_gpus: "):
        KubeletPluginDaemon(s, client=FlakyClient(), backend=backend)  # type: ignore[arg-type]
