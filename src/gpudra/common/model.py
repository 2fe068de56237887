"""The base for gpudra's immutable data models: frozen, strict about unknown fields, camelCase
on the wire (the Kubernetes convention our users read) and snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Frozen pydantic model with camelCase aliases; construct with either spelling."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys."""
        return self.model_dump(mode="json", by_alias=True)
