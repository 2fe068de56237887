"""``--kubeconfig`` and the backend flags are one declaration shared by every subcommand."""

from __future__ import annotations

import argparse

import pytest

from gpudra.cli.main import main, parser
from gpudra.nvml.mock import available_machines

SHARED = {
    "--kubeconfig": ("explain", "kubelet-plugin", "controller"),
    "--backend": ("discover", "kubelet-plugin"),
    "--profile": ("discover", "kubelet-plugin"),
    "--profile-file": ("discover", "kubelet-plugin"),
    "--mock-state-file": ("discover", "kubelet-plugin"),
    "--clique-id": ("discover", "kubelet-plugin"),
}


def action(cmd: str, flag: str) -> argparse.Action:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[cmd]._actions if flag in a.option_strings)


@pytest.mark.parametrize("flag", SHARED)
def test_every_subcommand_spells_types_and_documents_it_the_same(flag: str) -> None:
    seen = {
        (tuple(a.option_strings), a.dest, a.type, a.default, a.metavar, a.help)
        for a in (action(cmd, flag) for cmd in SHARED[flag])
    }
    assert len(seen) == 1, seen


def test_profile_help_lists_the_shipped_machines() -> None:
    help_ = action("discover", "--profile").help or ""
    assert all(name in help_ for name in available_machines())


def test_discover_refuses_mock_machine_choices_as_the_node_daemon_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both commands run the one rule (settings.backend.mock_machine_problem)."""
    monkeypatch.delenv("GPUDRA_PROFILE", raising=False)
    monkeypatch.delenv("GPUDRA_PROFILE_FILE", raising=False)
    lines = []
    for cmd in (["discover"], ["kubelet-plugin", "--node-name", "n1"]):
        assert main([*cmd, "--backend", "mock"]) == 2
        lines.append(capsys.readouterr().err.split("error: ", 1)[1])
    assert lines[0] == lines[1]
    assert "the mock backend needs exactly one of profile or profile_file" in lines[0]
