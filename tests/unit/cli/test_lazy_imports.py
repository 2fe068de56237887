"""What a node daemon process loads: the ``gpudra`` command line is built in every process,
so the controller and the allocator (with its CEL library, about 20 MiB) are imported only
when their command runs."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("gpudra.allocation.cel", "gpudra.allocation.engine", "gpudra.controller.reconciler")


def loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_building_the_command_line_loads_no_allocator_or_controller() -> None:
    modules = loaded_after("from gpudra.cli.main import parser; parser()")
    assert [m for m in HEAVY if m in modules] == []


def test_the_kubelet_plugin_command_loads_no_allocator_or_controller() -> None:
    modules = loaded_after(
        "import gpudra.cli.main, gpudra.cli.kubelet_plugin, gpudra.kubeletplugin.daemon"
    )
    assert [m for m in HEAVY if m in modules] == []
    assert "gpudra.kubeletplugin.daemon" in modules  # the check sees what is loaded
