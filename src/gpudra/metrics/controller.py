"""The controller's metrics: queue depth, allocation latency, outcomes, gang wait time."""

from __future__ import annotations

from collections.abc import Mapping
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gpudra.metrics.endpoint import Route, serve

OUTCOMES = ("allocate", "ungate", "rollback", "wait", "fail", "error")


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "gpudra_controller_queue_depth", "Gated pod groups seen in the last pass", registry=r
        )
        self.latency = Histogram(
            "gpudra_controller_decision_seconds",
            "Time to decide and apply one group",
            registry=r,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.outcomes = Counter(
            "gpudra_controller_decisions_total",
            "Group decisions by outcome",
            ["outcome"],
            registry=r,
        )
        self.gang_wait = Histogram(
            "gpudra_controller_gang_wait_seconds",
            "From first seeing a gated pod to allocating it",
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800),
        )
        for outcome in OUTCOMES:  # pre-create series at zero
            self.outcomes.labels(outcome=outcome)

    def observe(self, outcome: str, seconds: float) -> None:
        self.outcomes.labels(outcome=outcome).inc()
        self.latency.observe(seconds)

    def serve(
        self, port: int, addr: str = "0.0.0.0", routes: Mapping[str, Route] | None = None
    ) -> ThreadingHTTPServer:
        """/metrics, plus ``routes`` (/healthz), on ``addr:port``."""
        return serve(self.registry, port, addr, routes or {})
