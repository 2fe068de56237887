"""The checks make kind-e2e applies to each example pod's printed environment, run here on the
real example manifests and on environments the node daemon's CDI spec would produce."""

from __future__ import annotations

import pytest

from gpudra.cdi.spec import CdiDevice, claim_spec
from gpudra_testkit.harness.examples import EXAMPLES, docs, e2e


def test_expected_devices_of_the_examples() -> None:
    got = {p.stem: e2e().expected_devices(docs(p)) for p in EXAMPLES}
    assert got == {"big-memory-gpu": 1, "nvlink-pair": 2, "single-gpu": 1}


def env_from_cdi(n: int) -> str:
    """The environment a container gets from the daemon's CDI spec for ``n`` devices."""
    spec = claim_spec(
        claim_uid="uid-1",
        namespace="ns",
        name="c",
        devices=[
            CdiDevice(f"gpu-{i}", f"GPU-{i:08d}-aaaa-bbbb-cccc-0123456789ab", (f"/dev/nvidia{i}",))
            for i in range(n)
        ],
        dev_root=None,
    )
    env = list(spec["containerEdits"]["env"])
    nodes = [n["path"] for n in spec["containerEdits"]["deviceNodes"]]
    for d in spec["devices"]:
        env += d["containerEdits"]["env"]
        nodes += [n["path"] for n in d["containerEdits"]["deviceNodes"]]
    return "\n".join(["PATH=/bin", *env, *(f"device {n}" for n in sorted(nodes))])


@pytest.mark.parametrize("n", [1, 2])
def test_a_cdi_environment_passes(n: int) -> None:
    assert e2e().check_env(env_from_cdi(n), n) == []


BAD = {
    "no devices": ("PATH=/bin\n", 1, "NVIDIA_VISIBLE_DEVICES lists []"),
    "one short": (None, 2, "expected 2 GPU(s)"),
    "not uuids": (
        "NVIDIA_VISIBLE_DEVICES=0\nGPUDRA_DEVICE_GPU_0=0\nGPUDRA_CLAIM=ns/c\n",
        1,
        "not GPU UUIDs",
    ),
    "no claim var": (
        "NVIDIA_VISIBLE_DEVICES=GPU-1\nGPUDRA_DEVICE_GPU_0=GPU-1\n",
        1,
        "no GPUDRA_CLAIM",
    ),
    "a device node short": (
        None,
        1,
        "expected 1 /dev/nvidia<N>",
    ),
    "no control nodes": (
        "NVIDIA_VISIBLE_DEVICES=GPU-1\nGPUDRA_DEVICE_GPU_0=GPU-1\nGPUDRA_CLAIM=ns/c\n"
        "device /dev/nvidia0\n",
        1,
        "control device nodes missing",
    ),
    "device var not visible": (
        "NVIDIA_VISIBLE_DEVICES=GPU-1\nGPUDRA_DEVICE_GPU_0=GPU-2\nGPUDRA_CLAIM=ns/c\n",
        1,
        "not all visible",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_wrong_environment_is_reported(case: str) -> None:
    log, n, says = BAD[case]
    if case == "a device node short":
        log = "\n".join(x for x in env_from_cdi(1).splitlines() if x != "device /dev/nvidia0")
    problems = e2e().check_env(log if log is not None else env_from_cdi(1), n)
    assert any(says in p for p in problems), problems
