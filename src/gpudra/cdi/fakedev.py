"""Mock mode: stand-in files for /dev/nvidia* so that CDI device nodes have a host path.

A CDI spec written in mock mode maps each device node to ``<dev root>/<basename>``
(``gpudra.cdi.spec``); these are the files it points at: character devices with /dev/null's
numbers where the process may mknod, plain files otherwise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from gpudra.cdi.spec import CONTROL_NODES


def make_fake_dev_root(root: Path, device_nodes: Iterable[str]) -> None:
    """Create the stand-ins of the control nodes and of ``device_nodes`` (container paths,
    e.g. /dev/nvidia3, /dev/nvidia-caps/nvidia-cap21) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    names = dict.fromkeys(p.rsplit("/", 1)[-1] for p in (*CONTROL_NODES, *device_nodes))
    for name in names:
        path = root / name
        if path.exists():
            continue
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except (PermissionError, OSError):
            path.touch()
