"""``gpudra mock inject``: put a fault into a mock node's shared state file.

Every process using the file (the node daemon, the device plugin, tests) sees it:
``--xid N``, ``--ecc-double-bit``, ``--ecc-single-bit``, ``--lost`` or ``--recover``.
``--recovery-action A`` sets what NVML's GPU recovery-action field reads for the GPU: with
``--xid N`` (the XID's event carries it), or alone (no event; e.g. ``none`` later: the driver
says the GPU is fine again, and the daemons end its XID faults).  ``--recover`` forgets it
(a driver without the field, as a GPU that was never given one).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpudra.devices.faults import RecoveryAction
from gpudra.nvml.mock.faults import FaultName, inject
from gpudra.nvml.mock.state import StateStore


def _index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a GPU index is 0, 1, 2, ..., not {text!r}")
    return int(text)


def add_parser(sub: Any) -> None:
    mock = sub.add_parser("mock", help="act on a mock GPU node (fault injection)")
    verbs = mock.add_subparsers(dest="mock_command", required=True)
    p = verbs.add_parser(
        "inject",
        help="inject a fault into a mock node's state file",
        description="Queue a health event (and, for --lost/--recover, change the GPU's state) "
        "in the state file the mock node's daemons read (--mock-state-file of the node daemon "
        "and of the device plugin).",
    )
    p.add_argument("--state-file", type=Path, required=True, help="the mock node's state file")
    p.add_argument("--gpu", type=_index, required=True, help="GPU index")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--xid", type=int, help="an XID event with this number")
    what.add_argument("--ecc-double-bit", action="store_true", help="a double-bit ECC error")
    what.add_argument("--ecc-single-bit", action="store_true", help="a single-bit ECC error")
    what.add_argument("--lost", action="store_true", help="the GPU falls off the bus")
    what.add_argument("--recover", action="store_true", help="the GPU is back; faults end")
    p.add_argument(
        "--recovery-action",
        type=RecoveryAction,
        choices=list(RecoveryAction),
        metavar="|".join(RecoveryAction),
        help="what NVML's GPU recovery action reads from now on: with --xid, or alone "
        "(none: the GPU is fine again)",
    )
    p.set_defaults(inject_parser=p)


def run(args: argparse.Namespace) -> int:
    fault: FaultName = "xid"
    if args.ecc_double_bit:
        fault = "ecc-double-bit"
    elif args.ecc_single_bit:
        fault = "ecc-single-bit"
    elif args.lost:
        fault = "lost"
    elif args.recover:
        fault = "recover"
    elif args.xid is None:
        fault = "recovery-action"
    action: RecoveryAction | None = args.recovery_action
    if fault == "recovery-action" and action is None:
        args.inject_parser.error(
            "one of the arguments --xid --ecc-double-bit --ecc-single-bit --lost --recover "
            "--recovery-action is required"
        )
    if action is not None and fault not in ("xid", "recovery-action"):
        args.inject_parser.error(f"--recovery-action goes with --xid or alone, not --{fault}")
    inject(StateStore(args.state_file), args.gpu, fault, args.xid, action)
    said = f"{fault}{f' {args.xid}' if args.xid is not None else ''}"
    if action is not None:
        said += f" (recovery action {action})" if fault == "xid" else f" {action}"
    print(f"{args.state_file}: GPU {args.gpu}: {said}")
    return 0
