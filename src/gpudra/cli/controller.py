"""``gpudra controller``: the cluster controller as a plain process or a Deployment."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import uuid
from types import FrameType
from typing import Any

from gpudra.cli.settings_flags import add_config_flag, add_flags, load_settings, precedence_note
from gpudra.cli.shared_flags import SHARED_FIELDS, api_client, kubeconfig_flags
from gpudra.common.threads import Threads
from gpudra.settings import ControllerSettings

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "controller",
        help="run the topology-aware, gang-aware allocator",
        description=precedence_note(ControllerSettings, "interval_s"),
        parents=[kubeconfig_flags()],
    )
    add_config_flag(p)
    add_flags(p, ControllerSettings, skip=SHARED_FIELDS)


def settings_from(args: argparse.Namespace) -> ControllerSettings:
    """The controller's settings: flags > GPUDRA_* environment > ``--config`` file > defaults."""
    return load_settings(ControllerSettings, args)


def _healthz(threads: Threads) -> tuple[bool, str]:
    dead = threads.dead()
    if not dead:
        return True, "ok\n"
    return False, "".join(f"thread {n} died: {why}\n" for n, why in sorted(dead.items()))


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every gpudra process builds the whole command line, and
    # the node daemons should not carry the controller and the allocator's CEL library
    from gpudra.controller.cache import ClusterCache
    from gpudra.controller.leader import LeaderElector
    from gpudra.controller.loop import run_loop
    from gpudra.controller.reconciler import Reconciler
    from gpudra.metrics.controller import ControllerMetrics

    s = settings_from(args)
    client = api_client(s)
    metrics = ControllerMetrics()
    threads = Threads()  # every long-lived thread, guarded: one that dies fails /healthz
    stop = threads.stop
    if s.metrics_port:
        metrics.serve(s.metrics_port, routes={"/healthz": lambda: _healthz(threads)})
    cache = ClusterCache(client)
    cache.start(threads)
    if not cache.wait_synced(120):
        log.warning("the watch caches are not all synced after 120s; starting anyway")
    reconciler = Reconciler(
        client,
        metrics=metrics,
        unschedulable_deadline_s=s.unschedulable_deadline_s,
        driver=s.driver_name,
        cache=cache,
    )
    identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    lost = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    elector = None
    if s.leader_elect:
        elector = LeaderElector(
            client, name=s.lease_name, namespace=s.lease_namespace, identity=identity
        )
        reconciler.may_write = elector.leading  # checked before every write batch
        threads.spawn("leader-election", elector.run, stop, lost.set)
    try:
        return run_loop(
            reconciler,
            stop,
            interval_s=s.interval_s,
            leading=elector.leading if elector is not None else lambda: True,
            lost=lost,
            once=s.once,
            changed=cache.changed,
        )
    finally:
        stop.set()
        if elector is not None:
            elector.release()
        client.close()
