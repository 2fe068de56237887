"""``gpudra controller``: the cluster controller as a plain process or a Deployment."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from gpudra.controller.cache import ClusterCache
from gpudra.controller.leader import LeaderElector
from gpudra.controller.loop import run_loop
from gpudra.controller.reconciler import Reconciler
from gpudra.kube.client import KubeClient
from gpudra.metrics.controller import ControllerMetrics
from gpudra.resourceapi import DRIVER_NAME

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("controller", help="run the topology-aware, gang-aware allocator")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster)")
    p.add_argument(
        "--driver-name",
        default=DRIVER_NAME,
        help=f"the node daemons' DRA driver name (default {DRIVER_NAME}): its pools must be "
        "named after their nodes",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="most seconds between passes (a pass also starts on every watched change; "
        "passes read the watch-fed cache, not the API server)",
    )
    p.add_argument("--metrics-port", type=int, default=0, help="serve /metrics (0: off)")
    p.add_argument("--leader-elect", action="store_true", help="run under a Lease (replicas)")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "kube-system"))
    p.add_argument("--lease-name", default="gpudra-controller")
    p.add_argument("--once", action="store_true", help="one pass, then exit (for scripts)")
    p.add_argument(
        "--unschedulable-deadline",
        type=float,
        default=120.0,
        help="seconds an ungated pod may stay unbound before its claims are released",
    )


def run(args: argparse.Namespace) -> int:
    client = (KubeClient.from_kubeconfig(args.kubeconfig) if args.kubeconfig
              else KubeClient.in_cluster())  # fmt: skip
    metrics = ControllerMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    stop = threading.Event()
    cache = ClusterCache(client)
    cache.start(stop)
    if not cache.wait_synced(120):
        log.warning("the watch caches are not all synced after 120s; starting anyway")
    reconciler = Reconciler(
        client,
        metrics=metrics,
        unschedulable_deadline_s=args.unschedulable_deadline,
        driver=args.driver_name,
        cache=cache,
    )
    identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    lost = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            client, name=args.lease_name, namespace=args.lease_namespace, identity=identity
        )
        reconciler.may_write = elector.leading  # checked before every write batch
        threading.Thread(
            target=elector.run, args=(stop, lost.set), name="leader-election", daemon=True
        ).start()
    try:
        return run_loop(
            reconciler,
            stop,
            interval_s=args.interval,
            leading=elector.leading if elector is not None else lambda: True,
            lost=lost,
            once=args.once,
            changed=cache.changed,
        )
    finally:
        stop.set()
        if elector is not None:
            elector.release()
        client.close()
