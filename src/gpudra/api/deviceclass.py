"""``DeviceClass``: its CEL selectors and the device config it adds to allocations."""

from __future__ import annotations

from typing import Any, TypedDict

from gpudra.api.meta import Object, ObjectMeta


class DeviceClassSpec(TypedDict, total=False):
    selectors: list[dict[str, Any]]  # each {"cel": {"expression": ...}}
    config: list[dict[str, Any]]  # each {"opaque": {...}}


class DeviceClass(TypedDict, total=False):
    metadata: ObjectMeta
    spec: DeviceClassSpec


def class_spec(device_class: Object) -> DeviceClassSpec:
    spec: DeviceClassSpec = device_class.get("spec") or {}
    return spec


def selector_expressions(selectors: list[dict[str, Any]]) -> list[str]:
    """The CEL expressions of a list of DeviceSelectors (a class's or a request's)."""
    return [str((s.get("cel") or {}).get("expression") or "") for s in selectors]


def class_selectors(device_class: Object) -> list[str]:
    """The CEL expressions of a DeviceClass's selectors."""
    return selector_expressions(class_spec(device_class).get("selectors") or [])


def class_config(device_class: Object) -> list[dict[str, Any]]:
    """``spec.config``: the configuration entries the class adds to every allocation."""
    return class_spec(device_class).get("config") or []
