"""Which mock profile a node daemon runs: the node's label, else the configured default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpudra.kubeletplugin.profile_choice import choose_profile
from gpudra.settings import KubeletPluginSettings

LABEL = "gpudra.io/mock-profile"


def settings(**kw: Any) -> KubeletPluginSettings:
    return KubeletPluginSettings(node_name="n1", **kw)


CASES = {
    "label wins over the default": (
        {"backend": "mock", "profile": "dgx-h100", "profile_node_label": LABEL},
        {LABEL: "dgx1-v100"},
        ("dgx1-v100", None, f"profile 'dgx1-v100' from node label {LABEL}"),
    ),
    "no label: the default, and why": (
        {"backend": "mock", "profile": "dgx-h100", "profile_node_label": LABEL},
        {"other": "x"},
        ("dgx-h100", None, f"default profile 'dgx-h100'; node has no {LABEL} label"),
    ),
    "empty label value: the default": (
        {"backend": "mock", "profile": "pcie-l4", "profile_node_label": LABEL},
        {LABEL: ""},
        ("pcie-l4", None, f"default profile 'pcie-l4'; node has no {LABEL} label"),
    ),
    "no label key configured: labels ignored": (
        {"backend": "mock", "profile": "pcie-l4"},
        {LABEL: "dgx-a100"},
        ("pcie-l4", None, "default profile 'pcie-l4'"),
    ),
    "profile file as the default": (
        {"backend": "mock", "profile_file": Path("/p.yaml"), "profile_node_label": LABEL},
        {},
        (None, Path("/p.yaml"), "profile file /p.yaml"),
    ),
    "real GPUs: no profile at all": (
        {"backend": "nvml", "profile_node_label": LABEL},
        {LABEL: "dgx-a100"},
        (None, None, "NVML"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_choose_profile(case: str) -> None:
    kw, labels, (profile, profile_file, source) = CASES[case]
    got = choose_profile(settings(**kw), labels)
    assert (got.profile, got.profile_file, got.source) == (profile, profile_file, source)
