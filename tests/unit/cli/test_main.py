"""``gpudra``'s top level: any GpudraError is one line and exit 2, a bug keeps its traceback;
klog's ``-v N`` (``-v`` alone still the debug switch); ``--log-format text|json``."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gpudra.catalogue.gpuset import GpuSetError
from gpudra.cli import main as cli
from gpudra.common.errors import GpudraError
from gpudra.common.logfmt import bind
from gpudra.controller.reconciler import NotLeader
from gpudra.kube.errors import Forbidden
from gpudra.nvml.errors import GpuLost, LibraryNotFound


def stub(monkeypatch: pytest.MonkeyPatch, run: Callable[[argparse.Namespace], int]) -> None:
    """``gpudra discover`` runs ``run`` instead."""
    monkeypatch.setitem(cli.COMMANDS, "discover", run)


@contextmanager
def bare_root_logger() -> Iterator[None]:
    """The root logger as a fresh process has it (pytest's capture handlers put back after),
    so that `main` sets logging up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(Forbidden("resourceslices is forbidden"), id="API edge"),
        pytest.param(GpuLost("GPU 0 fell off the bus"), id="GPU edge"),
        pytest.param(GpuSetError("GPU set '9' names GPU(s) [9]"), id="a ValueError too"),
        pytest.param(NotLeader("not leading any more"), id="internal, should it escape"),
    ],
)
def test_any_gpudra_error_is_one_line_and_exit_2(
    error: GpudraError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_: argparse.Namespace) -> int:
        raise error

    stub(monkeypatch, fail)
    assert cli.main(["discover"]) == cli.EXIT_USAGE == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"gpudra discover: error: {error}\n")


def test_a_bug_is_not_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(_: argparse.Namespace) -> int:
        raise KeyError("oops")

    stub(monkeypatch, bug)
    with pytest.raises(KeyError):
        cli.main(["discover"])


def test_the_traceback_of_a_gpudra_error_is_logged_at_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_: argparse.Namespace) -> int:
        raise LibraryNotFound("NVML library not found")

    stub(monkeypatch, fail)
    with bare_root_logger():
        assert cli.main(["-v", "--log-format", "json", "discover"]) == 2
    *logged, last = capsys.readouterr().err.splitlines()
    assert last == "gpudra discover: error: NVML library not found"
    (doc,) = [json.loads(line) for line in logged if '"gpudra.cli.main"' in line]
    assert doc["level"] == "DEBUG" and "LibraryNotFound" in doc["exc"]


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [
        pytest.param([], 0, id="default: INFO"),
        pytest.param(["-v"], 4, id="-v alone: debug, as before"),
        pytest.param(["--verbose"], 4, id="--verbose alone"),
        pytest.param(["-v", "2"], 2, id="-v N"),
        pytest.param(["-v=6"], 6, id="-v=N"),
        pytest.param(["--v=5"], 5, id="--v=N, klog's spelling"),
        pytest.param(["--v", "0"], 0, id="--v N"),
        pytest.param(["-v", "--log-format", "json"], 4, id="-v alone before another flag"),
    ],
)
def test_verbosity(argv: list[str], verbosity: int) -> None:
    args = cli.parser().parse_args(cli.bare_verbose([*argv, "discover"]))
    assert (args.command, args.verbosity) == ("discover", verbosity)


def test_a_verbosity_above_7_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["-v", "8", "discover"])
    assert exited.value.code == 2
    assert "a verbosity is 0 to 7, not '8'" in capsys.readouterr().err


def claim_logging(_: argparse.Namespace) -> int:
    log = bind(logging.getLogger("gpudra.kubeletplugin.node"), claim="ns/c", claim_uid="u1")
    log.info("preparing %s", "ns/c (u1)")
    log.debug("a detail")
    return 0


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["--log-format", "json"], None, id="flag"),
        pytest.param([], "json", id="GPUDRA_LOG_FORMAT"),
        pytest.param(["--log-format=json"], "text", id="the flag wins"),
    ],
)
def test_json_lines_carry_the_bound_fields(
    argv: list[str],
    env: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if env is None:
        monkeypatch.delenv(cli.LOG_FORMAT_ENV, raising=False)
    else:
        monkeypatch.setenv(cli.LOG_FORMAT_ENV, env)
    stub(monkeypatch, claim_logging)
    with bare_root_logger():
        assert cli.main([*argv, "discover"]) == 0
    (doc,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]  # no DEBUG
    assert set(doc) == {"ts", "level", "logger", "msg", "claim", "claim_uid"}
    assert doc["ts"].endswith("Z")
    assert (doc["level"], doc["logger"], doc["msg"]) == (
        "INFO",
        "gpudra.kubeletplugin.node",
        "preparing ns/c (u1)",
    )
    assert (doc["claim"], doc["claim_uid"]) == ("ns/c", "u1")


def test_text_lines_end_with_the_bound_fields_and_v4_shows_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cli.LOG_FORMAT_ENV, raising=False)
    stub(monkeypatch, claim_logging)
    with bare_root_logger():
        assert cli.main(["--v=4", "discover"]) == 0
    info, debug = capsys.readouterr().err.splitlines()
    assert info.endswith(
        " INFO gpudra.kubeletplugin.node: preparing ns/c (u1) claim=ns/c claim_uid=u1"
    )
    assert debug.endswith(" DEBUG gpudra.kubeletplugin.node: a detail claim=ns/c claim_uid=u1")


def test_an_unknown_log_format_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.LOG_FORMAT_ENV, "xml")
    with pytest.raises(SystemExit) as exited:
        cli.main(["discover"])
    assert exited.value.code == 2
    assert "GPUDRA_LOG_FORMAT='xml': use one of text, json" in capsys.readouterr().err
