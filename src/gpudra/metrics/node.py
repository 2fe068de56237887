"""The node daemon's metrics: prepare/unprepare outcomes, health, what the node can publish."""

from __future__ import annotations

from collections.abc import Mapping
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge

from gpudra.metrics.endpoint import Route, serve


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
        self.healthy = Gauge(
            "gpudra_node_healthy",
            "1 while the daemon is healthy (threads alive, API server and NVML answering)",
            registry=r,
        )
        self.released = Counter(
            "gpudra_node_released_claims_total",
            "Checkpointed claims released by garbage collection (their ResourceClaim was gone)",
            registry=r,
        )
        self.gpu_healthy = Gauge(
            "gpudra_gpu_health",
            "1 while the GPU has no fatal fault (XID, double-bit ECC, lost), 0 while it has one "
            "(its devices are tainted)",
            ["gpu", "uuid"],
            registry=r,
        )
        self.xids = Counter(
            "gpudra_gpu_xid_total", "XID events reported by NVML", ["gpu", "xid"], registry=r
        )
        for op in ("prepare", "unprepare"):
            for outcome in ("ok", "error"):
                self.requests.labels(operation=op, outcome=outcome)

    def claim(self, operation: str, ok: bool) -> None:
        self.requests.labels(operation=operation, outcome="ok" if ok else "error").inc()

    def gpu_health(self, gpu: int, uuid: str, healthy: bool) -> None:
        self.gpu_healthy.labels(gpu=str(gpu), uuid=uuid).set(1 if healthy else 0)

    def xid(self, gpu: int, xid: int) -> None:
        self.xids.labels(gpu=str(gpu), xid=str(xid)).inc()

    def serve(
        self, port: int, addr: str = "0.0.0.0", routes: Mapping[str, Route] | None = None
    ) -> ThreadingHTTPServer:
        """/metrics, plus ``routes`` (e.g. /healthz), on ``addr:port``."""
        return serve(self.registry, port, addr, routes or {})
