"""Settings every cluster-facing binary shares: how it reaches the API server, the driver name.

Declared once here so the node daemon, the controller and ``gpudra explain`` spell, type and
check them the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _driver_name(v: str) -> str:
    if len(v) > 63 or not _DNS_SUBDOMAIN.match(v):
        raise ValueError(
            f"{v!r} is not a valid driver name: a lowercase DNS subdomain of at most 63 "
            "characters, e.g. gpu.gpudra.io"
        )
    return v


DriverName = Annotated[str, AfterValidator(_driver_name)]
"""A DRA driver name: a lowercase DNS subdomain of at most 63 characters."""


class KubeconfigSetting(BaseModel):
    """``kubeconfig``: mixed into each settings model that talks to the API server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file for the API server (daemons without one use the "
        "in-cluster service account)",
    )
