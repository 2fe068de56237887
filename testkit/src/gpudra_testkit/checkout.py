"""The gpudra source checkout the test kit runs from.

The kit drives files that live beside the code (``charts/gpudra``, ``deploy/examples``,
``deploy/controlplane``), so it is installed editable from a checkout (``make install``) and
finds the checkout above its own source; a copy installed anywhere else has no repository and
says so on import instead of failing later on a missing file.
"""

from __future__ import annotations

from pathlib import Path


def _find_checkout() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "testkit" / "pyproject.toml").is_file() and (parent / "charts").is_dir():
            return parent
    raise RuntimeError(
        f"gpudra_testkit at {here} is not inside a gpudra checkout; "
        "install it editable from one (make install)"
    )


REPO = _find_checkout()
