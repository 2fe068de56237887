"""Compare gpudra's real-NVML discovery with ``nvidia-smi -q -x`` on a machine with GPUs.

Read-only: it never changes MIG mode or any other GPU setting.  Run by ``make gpu-check``
(or directly with ``python tests/gpu/gpu_check.py``); exits non-zero on any mismatch and
prints one line per fact compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

MEMORY_TOLERANCE = 0.01  # NVML's total vs nvidia-smi's "FB total" may differ by reserved memory


def nvidia_smi() -> list[dict[str, Any]]:
    xml = subprocess.run(["nvidia-smi", "-q", "-x"], check=True, capture_output=True, text=True)
    return parse_smi(xml.stdout)


def parse_smi(xml: str) -> list[dict[str, Any]]:
    """The facts gpu-check compares, from ``nvidia-smi -q -x`` output."""
    root = ET.fromstring(xml)
    gpus = []
    for gpu in root.findall("gpu"):
        total = (gpu.findtext("fb_memory_usage/total") or "0 MiB").split()[0]
        mig = (gpu.findtext("mig_mode/current_mig") or "N/A").strip()
        gpus.append(
            {
                "uuid": (gpu.findtext("uuid") or "").strip(),
                "memoryMiB": int(total),
                "mig": {"Enabled": "enabled", "Disabled": "disabled"}.get(mig, "unsupported"),
                "bus": (gpu.get("id") or "").lower(),
                "product": (gpu.findtext("product_name") or "").strip(),
            }
        )
    return gpus


def gpudra() -> dict[str, Any]:
    out = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
        [sys.executable, "-m", "gpudra", "discover", "--backend", "nvml", "-o", "json"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"gpudra discover failed (exit {out.returncode}): {out.stderr.strip()}")
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def main() -> int:
    smi, ours = nvidia_smi(), gpudra()
    problems: list[str] = []

    def check(what: str, theirs: object, mine: object, ok: bool) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}: nvidia-smi={theirs} gpudra={mine}")
        if not ok:
            problems.append(what)

    check("GPU count", len(smi), ours["gpuCount"], len(smi) == ours["gpuCount"])
    for s, g in zip(smi, ours["gpus"], strict=False):
        i = g["index"]
        check(f"GPU {i} UUID", s["uuid"], g["uuid"], s["uuid"] == g["uuid"])
        check(f"GPU {i} product", s["product"], g["productName"], s["product"] == g["productName"])
        diff = abs(s["memoryMiB"] - g["memoryMiB"]) / max(s["memoryMiB"], 1)
        check(f"GPU {i} memory MiB", s["memoryMiB"], g["memoryMiB"], diff <= MEMORY_TOLERANCE)
        check(f"GPU {i} MIG mode", s["mig"], g["migMode"], s["mig"] == g["migMode"])
        bus_ok = s["bus"].endswith(g["pciBusId"].split(":", 1)[1])
        check(f"GPU {i} PCI bus", s["bus"], g["pciBusId"], bus_ok)
    print(json.dumps({k: ours[k] for k in ("driverVersion", "cudaDriverVersion")}))
    for g in ours["gpus"]:
        keys = (
            "index",
            "architecture",
            "cudaComputeCapability",
            "brand",
            "numaNode",
            "multiprocessors",
            "migFamily",
            "migDevices",
            "nvlinkPeers",
        )
        print(json.dumps({k: g.get(k) for k in keys}))
    print(json.dumps(ours["nvlink"]))
    if problems:
        print(f"gpu-check: {len(problems)} mismatch(es): {', '.join(problems)}")
        return 1
    print(f"gpu-check: all {len(smi)} GPU(s) match nvidia-smi")
    return 0


if __name__ == "__main__":
    sys.exit(main())
