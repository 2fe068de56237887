"""What is published is what is prepared, whatever the server: GPUs asked for in dynamic-MIG
mode on a node that already has MIG instances.

On a 1.34 server (no partitionable-device layout) those GPUs are static MIG: their existing
instances are published with their UUIDs, a claim for one is prepared onto that instance,
unprepare leaves it, and the start-up sweep (even with ``--remove-unknown-mig``) never
touches it.  On 1.35+ the same GPUs are dynamic: the placements are published and the
instances nobody holds are strays, removed when asked.  The daemon runs as its own process
against the real control plane; the kubelet's side is the DRA gRPC client of the harness.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.kube import KubeClient, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import allocated_claim
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration

PROFILE = "dgx-h100-mig"
THREE = "gpu-0-mig-3g40gb-9-4"  # 3g.40gb at memory slice 4 of GPU 0
ONE = "gpu-0-mig-1g10gb-19-0"  # 1g.10gb at memory slice 0 of GPU 0


def published(kube: KubeClient, node: str) -> dict[str, dict[str, Any]]:
    slices = kube.list(
        resources.RESOURCESLICES, field_selector=f"spec.nodeName={node},spec.driver={DRIVER_NAME}"
    ).items
    return {d["name"]: d for s in slices for d in s["spec"].get("devices") or []}


def instances(d: NodeDaemon) -> set[str]:
    return {m["uuid"] for m in json.loads(d.state_file.read_text())["mig"]}


def claim_for(kube: KubeClient, namespace: str, node: str, device: str) -> tuple[str, str, str]:
    return allocated_claim(
        kube, namespace, "c", driver=DRIVER_NAME, pool=node, device=device, node=node
    )


def sweeps_logged(d: NodeDaemon) -> int:
    return d.logs(tail=100_000).count("MIG sweep:")


def test_existing_instances_on_dynamic_mig_gpus_are_published_and_prepared_alike(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon(PROFILE, extra_args=["--dynamic-mig-gpus", "all"])
    node = d.node_name
    d.stop()
    mock = MockBackend(load_machine(PROFILE), node_name=node, state_file=d.state_file)
    gpu0 = mock.inventory().gpus[0].uuid
    three = mock.create_mig_device(gpu0, "3g.40gb", 4)
    one = mock.create_mig_device(gpu0, "1g.10gb", 0)
    d.start()
    plugin = harness.wait_for_plugin(DRIVER_NAME)
    if kube.server_version()[1] >= 35:
        # dynamic MIG: the placements are published, and the instances are nobody's
        wait_for("placements", lambda: THREE in published(kube, node) or None)
        assert "uuid" not in published(kube, node)[THREE]["attributes"]
        wait_for("stray report", lambda: three.uuid in d.logs() and "held by no claim" in d.logs())
        ref = claim_for(kube, namespace, node, THREE)
        out = plugin.prepare([ref])[ref[2]]
        assert f"taken by instance {three.uuid}, which gpudra did not create" in out.error
        d.stop()
        d.extra_args.append("--remove-unknown-mig")
        d.start()
        wait_for("strays removed", lambda: instances(d) == set())
        plugin = harness.wait_for_plugin(DRIVER_NAME)
        assert plugin.prepare([ref])[ref[2]].error == ""
        return
    # 1.34: static MIG, the existing instances are the devices
    devices = wait_for("static MIG devices", lambda: published(kube, node) or None)
    assert {n: dev["attributes"]["uuid"]["string"] for n, dev in devices.items()} == {
        THREE: three.uuid,
        ONE: one.uuid,
    }
    assert "publishing static MIG only" in d.logs()
    ref = claim_for(kube, namespace, node, THREE)
    out = plugin.prepare([ref])[ref[2]]
    assert out.error == ""
    spec = json.loads(next(d.cdi_dir.glob(f"*{ref[2]}*.json")).read_text())
    assert f"NVIDIA_VISIBLE_DEVICES={three.uuid}" in spec["containerEdits"]["env"]
    assert plugin.unprepare([ref]) == {ref[2]: ""}
    assert instances(d) == {three.uuid, one.uuid}  # not gpudra's: unprepare leaves them
    # the sweep, asked to remove instances nobody holds, must leave the published ones
    d.stop()
    sweeps = sweeps_logged(d)
    d.extra_args.append("--remove-unknown-mig")
    d.start()
    harness.wait_for_plugin(DRIVER_NAME)
    wait_for("the sweep", lambda: sweeps_logged(d) > sweeps)
    assert "MIG sweep: 0 instance(s) on 0 dynamic-MIG GPU(s)" in d.logs()
    assert "removed MIG instance" not in d.logs()
    assert instances(d) == {three.uuid, one.uuid}
    assert set(published(kube, node)) == {THREE, ONE}
