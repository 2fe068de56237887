"""The DeviceClasses gpudra ships, as every test and benchmark loads them.

One definition: ``deploy/deviceclasses.yaml`` (what the demo and the tests apply), which
``tests/chart`` checks equal to what the chart's ``templates/deviceclasses.yaml`` renders with
its default values.  Tests that need a class object take it from here instead of writing
the selector again.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from gpudra_testkit.checkout import REPO

FILE: Path = REPO / "deploy" / "deviceclasses.yaml"


@functools.cache
def _load() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(FILE.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs}


def shipped() -> dict[str, dict[str, Any]]:
    """Class name -> the DeviceClass object (a fresh copy each call)."""
    return copy.deepcopy(_load())


def shipped_class(name: str) -> dict[str, Any]:
    """One shipped class (``gpu.gpudra.io``, ``mig.gpudra.io``); KeyError names the others."""
    classes = shipped()
    if name not in classes:
        raise KeyError(f"no shipped DeviceClass {name!r}; {FILE} has {sorted(classes)}")
    return classes[name]
