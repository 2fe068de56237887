"""gpu-check parses real ``nvidia-smi -q -x`` output (an H100 capture, driver 580.159.04)."""

from __future__ import annotations

from pathlib import Path

from tests.gpu.gpu_check import parse_smi

CAPTURE = Path(__file__).parents[2] / "gpu" / "h100-nvidia-smi-q.xml"


def test_parse_captured_h100() -> None:
    (gpu,) = parse_smi(CAPTURE.read_text())
    assert gpu["uuid"] == "GPU-e4caaf5a-0138-a6c8-0921-3183b652159e"
    assert gpu["product"] == "NVIDIA H100 80GB HBM3"
    assert gpu["memoryMiB"] == 81559
    assert gpu["mig"] == "disabled"
    assert gpu["bus"] == "00000000:00:06.0"
