"""The ``gpudra`` command: parses arguments, wires the pieces together, maps errors to exits.

Composition root: this is the only place that decides which backend, clients and settings a
command runs with.  Expected failures are gpudra's own errors (``gpudra.common.errors``, one
tree under ``GpudraError``): any that reaches `main` prints one line and exits 2, its traceback
logged only at ``-v 4``; no traceback reaches the user otherwise.  Logging is set up here too:
klog's ``-v N`` and ``--log-format text|json`` (``gpudra.common.logfmt``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence

import yaml

from gpudra import __version__
from gpudra.cli import controller, device_plugin, explain, kubelet_plugin, mock
from gpudra.cli.discover_view import document, table
from gpudra.cli.settings_flags import load_settings
from gpudra.cli.shared_flags import backend_flags
from gpudra.common.errors import GpudraError
from gpudra.common.logfmt import DEBUG_VERBOSITY, FORMATS, MAX_VERBOSITY, formatter, level_for
from gpudra.nvml.factory import open_backend
from gpudra.settings import BackendSettings

EXIT_USAGE = 2
LOG_FORMAT_ENV = "GPUDRA_LOG_FORMAT"
_VERBOSE_FLAGS = ("-v", "--v", "--verbose")

log = logging.getLogger(__name__)


class CliError(GpudraError):
    """An expected failure to report in one line (exit 2)."""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gpudra", description="Kubernetes DRA driver for GPUs")
    root.add_argument("--version", action="version", version=f"gpudra {__version__}")
    root.add_argument(
        *_VERBOSE_FLAGS,
        dest="verbosity",
        type=_verbosity,
        nargs="?",
        const=DEBUG_VERBOSITY,
        default=0,
        metavar="N",
        help=f"log verbosity, klog's levels 0-{MAX_VERBOSITY}: INFO below {DEBUG_VERBOSITY}, "
        f"DEBUG from {DEBUG_VERBOSITY}; -v alone is -v {DEBUG_VERBOSITY} (default 0)",
    )
    root.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help=f"log lines as text or one JSON object each (default ${LOG_FORMAT_ENV}, else text)",
    )
    sub = root.add_subparsers(dest="command", required=True)
    disc = sub.add_parser(
        "discover", help="show the GPUs, MIG state and NVLink topology", parents=[backend_flags()]
    )
    disc.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME") or socket.gethostname(),
        help="node name (default: $NODE_NAME or the host name)",
    )
    disc.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    kubelet_plugin.add_parser(sub)
    device_plugin.add_parser(sub)
    mock.add_parser(sub)
    explain.add_parser(sub)
    controller.add_parser(sub)
    return root


def _verbosity(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_VERBOSITY:
        raise argparse.ArgumentTypeError(f"a verbosity is 0 to {MAX_VERBOSITY}, not {text!r}")
    return int(text)


def bare_verbose(argv: Sequence[str]) -> list[str]:
    """``-v`` given no level before the command (the debug switch it always was) as
    ``-v=4``: argparse would otherwise take the command's name for the level."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in COMMANDS or arg == "--":
            break
        if arg in _VERBOSE_FLAGS and not (i + 1 < len(out) and out[i + 1].isdigit()):
            out[i] = f"{arg}={DEBUG_VERBOSITY}"
    return out


def cmd_discover(args: argparse.Namespace) -> int:
    b = load_settings(BackendSettings, args)  # refuses mock without exactly one machine
    kind = b.backend
    if kind == "nvml" and (b.profile or b.profile_file):
        raise CliError("--profile/--profile-file need --backend mock")
    backend = open_backend(
        kind,
        node_name=args.node_name,
        profile=b.profile,
        profile_file=b.profile_file,
        state_file=b.mock_state_file,
        clique_id=b.clique_id,
    )
    try:
        inv = backend.inventory()
    finally:
        backend.close()
    if args.output == "json":
        sys.stdout.write(json.dumps(document(inv), indent=2) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(yaml.safe_dump(document(inv), sort_keys=False))
    else:
        sys.stdout.write(table(inv))
    return 0


COMMANDS = {
    "discover": cmd_discover,
    "kubelet-plugin": kubelet_plugin.run,
    "device-plugin": device_plugin.run,
    "mock": mock.run,
    "explain": explain.run,
    "controller": controller.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    root = parser()
    args = root.parse_args(bare_verbose(sys.argv[1:] if argv is None else argv))
    fmt = args.log_format or os.environ.get(LOG_FORMAT_ENV) or "text"
    if fmt not in FORMATS:
        root.error(f"{LOG_FORMAT_ENV}={fmt!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    # a no-op where logging is set up already (a test runner, a program embedding gpudra)
    logging.basicConfig(level=level_for(args.verbosity), handlers=[handler])
    try:
        return COMMANDS[args.command](args)
    except GpudraError as e:  # expected: one line; anything else is a bug, with its traceback
        log.debug("gpudra %s failed", args.command, exc_info=True)
        sys.stderr.write(f"gpudra {args.command}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
