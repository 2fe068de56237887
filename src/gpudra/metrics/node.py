"""The node daemon's metrics: prepare/unprepare outcomes and what the node can publish."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gpudra_node_claim_operations_total",
            "Prepare/unprepare of one claim, by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.dynamic_mig = Gauge(
            "gpudra_node_dynamic_mig_published",
            "1 if the configured dynamic-MIG GPUs are published as partitionable devices, 0 "
            "if the API server is too old (static MIG only)",
            registry=r,
        )
        for op in ("prepare", "unprepare"):
            for outcome in ("ok", "error"):
                self.requests.labels(operation=op, outcome=outcome)

    def claim(self, operation: str, ok: bool) -> None:
        self.requests.labels(operation=operation, outcome="ok" if ok else "error").inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
