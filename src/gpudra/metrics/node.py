"""The node daemon's metrics: the kubelet's DRA calls, what is prepared, health, what the node
can publish.

The request metrics are NVIDIA's DRA driver's (``nvidia_dra_*``, pkg/metrics) under gpudra
names, label for label, so a board for one ports to the other by renaming:
``gpudra_node_requests_total``, ``_request_duration_seconds`` and ``_requests_inflight``
count the kubelet's calls (``operation``: ``NodePrepareResources``, ``NodeUnprepareResources``;
one call may carry several claims); ``_prepare_errors_total`` and ``_unprepare_errors_total``
count the claims that failed, by ``error_type`` (the fixed set below, what
``gpudra.kubeletplugin.prepare_errors.ErrorType`` says went wrong); ``_prepared_devices`` is the
devices prepared now, by ``device_type``, set from the checkpoint (never counted up and down,
so it is right after a restart).  ``_mps_daemons`` is the claims' MPS control daemons that
run now (checked, not counted).  ``_shared_gpus`` is the GPUs of ``--shared-gpus`` by
``state``: ``published`` for consumable capacity, or ``fallback``, published as plain
devices (a pre-1.36 server, or MIG mode); set on each catalogue build.  Every known series
is created at zero (those labelled by driver and node by ``serving``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gpudra.metrics.endpoint import Route, serve

PREPARE = "NodePrepareResources"
UNPREPARE = "NodeUnprepareResources"
OPERATIONS = (PREPARE, UNPREPARE)
# the error_type label: gpudra.kubeletplugin.prepare_errors.ErrorType's values, in its order
PREPARE_ERROR_TYPES = (
    "invalid_request",
    "claim_not_found",
    "not_allocated",
    "api_error",
    "deadline_exceeded",
    "unknown_device",
    "device_unhealthy",
    "invalid_config",
    "unsupported_config",
    "device_busy",
    "mig_error",
    "mps_error",
    "nvml_error",
    "cdi_error",
    "checkpoint_error",
    "internal",
)
# unprepare reads no claim and resolves no device: only these can happen
UNPREPARE_ERROR_TYPES = (
    "invalid_request",
    "mig_error",
    "mps_error",
    "nvml_error",
    "cdi_error",
    "checkpoint_error",
    "internal",
)
# gpu: a whole GPU; mig: a MIG device (an existing instance, or one created at prepare)
DEVICE_TYPES = ("gpu", "mig")
# the state label of gpudra_node_shared_gpus
SHARED_STATES = ("published", "fallback")
# from a prepare answered from the checkpoint (~1 ms) to the kubelet's 45 s deadline and past
REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    45.0,
    60.0,
)


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gpudra_node_claim_operations_total",
            "Prepare/unprepare of one claim, by operation and outcome (per claim; the kubelet's "
            "calls are gpudra_node_requests_total, failures by cause "
            "gpudra_node_prepare_errors_total and gpudra_node_unprepare_errors_total)",
            ["operation", "outcome"],
            registry=r,
        )
        self.requests_total = Counter(
            "gpudra_node_requests_total",
            "Kubelet DRA calls served, by driver and operation (NodePrepareResources, "
            "NodeUnprepareResources); one call may carry several claims",
            ["driver", "operation"],
            registry=r,
        )
        self.request_duration = Histogram(
            "gpudra_node_request_duration_seconds",
            "Time to serve one kubelet DRA call (all its claims), by driver and operation",
            ["driver", "operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.requests_inflight = Gauge(
            "gpudra_node_requests_inflight",
            "Kubelet DRA calls being served now, by driver and operation",
            ["driver", "operation"],
            registry=r,
        )
        self.prepared_devices = Gauge(
            "gpudra_node_prepared_devices",
            "Devices of claims prepared on the node now (from the checkpoint), by type: gpu "
            "(a whole GPU), mig (a MIG device, static or dynamic)",
            ["node", "driver", "device_type"],
            registry=r,
        )
        self.prepare_errors = Counter(
            "gpudra_node_prepare_errors_total",
            "Claims NodePrepareResources failed to prepare, by what went wrong",
            ["driver", "error_type"],
            registry=r,
        )
        self.unprepare_errors = Counter(
            "gpudra_node_unprepare_errors_total",
            "Claims NodeUnprepareResources failed to unprepare, by what went wrong",
            ["driver", "error_type"],
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
        self.mps_daemons = Gauge(
            "gpudra_node_mps_daemons",
            "MPS control daemons running now for prepared claims (one per MPS claim)",
            registry=r,
        )
        self.shared_gpus = Gauge(
            "gpudra_node_shared_gpus",
            "GPUs asked for in shared mode (--shared-gpus), by state: published (several "
            "claims share each, Kubernetes 1.36+ consumable capacity) or fallback (published "
            "as plain devices, one claim per GPU: the server is older or the GPU is in MIG mode)",
            ["state"],
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
        self.shared(published=0, fallback=0)

    def serving(self, *, driver: str, node: str) -> None:
        """Create at zero the request, error and prepared-device series of the daemon serving
        ``driver`` on ``node``."""
        for op in OPERATIONS:
            self.requests_total.labels(driver=driver, operation=op)
            self.request_duration.labels(driver=driver, operation=op)
            self.requests_inflight.labels(driver=driver, operation=op)
        for error_type in PREPARE_ERROR_TYPES:
            self.prepare_errors.labels(driver=driver, error_type=error_type)
        for error_type in UNPREPARE_ERROR_TYPES:
            self.unprepare_errors.labels(driver=driver, error_type=error_type)
        for device_type in DEVICE_TYPES:
            self.prepared_devices.labels(node=node, driver=driver, device_type=device_type)

    @contextmanager
    def request(self, driver: str, operation: str) -> Iterator[None]:
        """Around serving one kubelet call: in flight while inside, then counted and timed
        (whatever its claims' outcomes, and if it raised)."""
        inflight = self.requests_inflight.labels(driver=driver, operation=operation)
        inflight.inc()
        started = time.perf_counter()
        try:
            yield
        finally:
            inflight.dec()
            self.request_duration.labels(driver=driver, operation=operation).observe(
                time.perf_counter() - started
            )
            self.requests_total.labels(driver=driver, operation=operation).inc()

    def claim(self, operation: str, ok: bool) -> None:
        self.requests.labels(operation=operation, outcome="ok" if ok else "error").inc()

    def claim_failed(self, driver: str, operation: str, error_type: str) -> None:
        """One claim of an ``operation`` call (``PREPARE``, ``UNPREPARE``) failed."""
        errors = {PREPARE: self.prepare_errors, UNPREPARE: self.unprepare_errors}[operation]
        errors.labels(driver=driver, error_type=error_type).inc()

    def prepared(self, *, driver: str, node: str, counts: Mapping[str, int]) -> None:
        """The devices prepared now, by type (a type not in ``counts``: none)."""
        for device_type in sorted({*DEVICE_TYPES, *counts}):
            self.prepared_devices.labels(node=node, driver=driver, device_type=device_type).set(
                counts.get(device_type, 0)
            )

    def shared(self, *, published: int, fallback: int) -> None:
        """The shared-mode GPUs of the last catalogue build (see the module docstring)."""
        for state, n in zip(SHARED_STATES, (published, fallback), strict=True):
            self.shared_gpus.labels(state=state).set(n)

    def gpu_health(self, gpu: int, uuid: str, healthy: bool) -> None:
        self.gpu_healthy.labels(gpu=str(gpu), uuid=uuid).set(1 if healthy else 0)

    def xid(self, gpu: int, xid: int) -> None:
        self.xids.labels(gpu=str(gpu), xid=str(xid)).inc()

    def serve(
        self, port: int, addr: str = "0.0.0.0", routes: Mapping[str, Route] | None = None
    ) -> ThreadingHTTPServer:
        """/metrics, plus ``routes`` (e.g. /healthz), on ``addr:port``."""
        return serve(self.registry, port, addr, routes or {})
