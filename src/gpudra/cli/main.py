"""The ``gpudra`` command: parses arguments, wires the pieces together, maps errors to exits.

Composition root: this is the only place that decides which backend, clients and settings a
command runs with.  Expected failures (bad input, no NVML) print one line and exit 2; no
traceback reaches the user.
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
from gpudra.cli.settings_flags import SettingsError, load_settings
from gpudra.cli.shared_flags import backend_flags
from gpudra.kube.errors import KubeError
from gpudra.nvml.errors import NvmlError
from gpudra.nvml.factory import BackendKind, open_backend
from gpudra.settings import BackendSettings

EXIT_USAGE = 2


class CliError(Exception):
    """An expected failure to report in one line (exit 2)."""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gpudra", description="Kubernetes DRA driver for GPUs")
    root.add_argument("--version", action="version", version=f"gpudra {__version__}")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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


def cmd_discover(args: argparse.Namespace) -> int:
    b = load_settings(BackendSettings, args)  # refuses mock without exactly one machine
    kind = BackendKind(b.backend)
    if kind is BackendKind.NVML and (b.profile or b.profile_file):
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
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except (
        CliError,
        NvmlError,
        KubeError,
        SettingsError,
        explain.ExplainError,
    ) as e:
        sys.stderr.write(f"gpudra {args.command}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
