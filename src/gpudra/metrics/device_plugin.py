"""The device plugin's metrics: advertised devices by resource and health, kubelet calls,
registrations, and whether the node's MIG layout fits the strategy."""

from __future__ import annotations

from collections.abc import Mapping
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge

from gpudra.metrics.endpoint import Route, serve


class DevicePluginMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.devices = Gauge(
            "gpudra_device_plugin_devices",
            "Device IDs advertised to the kubelet, by resource and health",
            ["resource", "health"],
            registry=r,
        )
        self.calls = Counter(
            "gpudra_device_plugin_calls_total",
            "Kubelet calls (Allocate, GetPreferredAllocation), by method and outcome",
            ["method", "outcome"],
            registry=r,
        )
        self.registrations = Counter(
            "gpudra_device_plugin_registrations_total",
            "Register calls to the kubelet, by resource and outcome",
            ["resource", "outcome"],
            registry=r,
        )
        self.layout_problems = Gauge(
            "gpudra_device_plugin_layout_problems",
            "Reasons the node's GPUs do not fit the MIG strategy (devices not advertised)",
            registry=r,
        )
        for m in ("Allocate", "GetPreferredAllocation"):
            for outcome in ("ok", "error"):
                self.calls.labels(method=m, outcome=outcome)

    def call(self, method: str, ok: bool) -> None:
        self.calls.labels(method=method, outcome="ok" if ok else "error").inc()

    def advertised(self, resource: str, healthy: int, unhealthy: int) -> None:
        self.devices.labels(resource=resource, health="Healthy").set(healthy)
        self.devices.labels(resource=resource, health="Unhealthy").set(unhealthy)

    def registered(self, resource: str, ok: bool) -> None:
        self.registrations.labels(resource=resource, outcome="ok" if ok else "error").inc()

    def serve(
        self, port: int, addr: str = "0.0.0.0", routes: Mapping[str, Route] | None = None
    ) -> ThreadingHTTPServer:
        """/metrics, plus ``routes`` (e.g. /healthz), on ``addr:port``."""
        return serve(self.registry, port, addr, routes or {})
