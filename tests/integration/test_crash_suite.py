"""The randomized crash suite: the node daemon is SIGKILLed over and over while it prepares
and unprepares whole-GPU, static-MIG and dynamic-MIG claims, and after every restart the
node's state must be what the kubelet believes.

A driver plays the kubelet: one call at a time over the DRA gRPC socket, for claims whose
allocations are written into the real API server.  Each daemon run ends in a SIGKILL, either
at a named crash point between two durable steps (``GPUDRA_CRASH_AT``, see
``gpudra.kubeletplugin.crashpoints``: checkpoint *preparing*, MIG create, UUID recorded,
CDI written, checkpoint *prepared*, and for unprepare MIG destroyed, CDI removed, entry
removed) or from outside at a random moment.  A call cut off by the kill is retried after the
restart, as the kubelet would, and must then succeed.  Then the invariants:

* every claim the kubelet saw prepared has its checkpoint entry (*prepared*) and CDI spec,
  and a dynamic-MIG claim exactly one instance at its placement, the one both record;
* no checkpoint entry, CDI spec or dynamic-MIG instance exists that no such claim holds, and
  the static MIG instances are never touched;
* no device (or physical memory slice) is prepared for two ordinary claims.

On a 1.34 server (no partitionable-device layout) the claims on the dynamic-MIG GPUs are
left out: those GPUs are static MIG there, for the daemon as for the scheduler.

Seeded and reproducible: the seed is printed (``GPUDRA_CRASH_SEED`` replays one);
``GPUDRA_CRASH_KILLS`` raises the number of kills (default 100).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpudra._proto import dra_v1_pb2, dra_v1_pb2_grpc
from gpudra.catalogue.catalogue import CatalogueDevice, DeviceKind, MigIdentity, build_catalogue
from gpudra.catalogue.names import gpu_device_name
from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient
from gpudra.kubeletplugin.crashpoints import ENV as CRASH_ENV
from gpudra.kubeletplugin.crashpoints import POINTS
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.harness.chart import Launch
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import allocated_claim

pytestmark = pytest.mark.integration

PROFILE = "dgx-h100-mixed"  # MIG disabled on GPUs 0, 2, 3 (whole), enabled on 1 and 4-7
DYNAMIC = frozenset({4, 5, 6, 7})  # static MIG on a 1.34 server, which has no dynamic MIG
STATIC_GPU = 1
PLACEMENT = DeviceKind.MIG_PLACEMENT
CALL_TIMEOUT_S = 45.0
MAX_RETRIES = 5  # tries the last, crash-free run gives a cut-off call
OPS_PER_RUN = 40  # then the run is killed from outside if no crash point was reached

# claim -> (GPU index, MIG profile or "" for the whole GPU, memory-slice start)
CLAIMS = {
    "w0": (0, "", 0),
    "w0-twin": (0, "", 0),  # the same GPU as w0: never both
    "w2": (2, "", 0),
    "w3": (3, "", 0),
    "s1-a": (STATIC_GPU, "3g.40gb", 0),  # static MIG: existing instances, used as they are
    "s1-b": (STATIC_GPU, "3g.40gb", 4),
    "d4-a": (4, "1g.10gb", 0),
    "d4-b": (4, "1g.10gb", 1),
    "d4-c": (4, "3g.40gb", 4),
    "d5": (5, "7g.80gb", 0),
    "d6-a": (6, "3g.40gb", 0),
    "d6-b": (6, "4g.40gb", 0),  # overlaps d6-a
    "d7": (7, "2g.20gb", 2),
    "w7": (7, "", 0),  # the whole of a dynamic-MIG GPU
}


@dataclass
class Claim:
    name: str
    uid: str
    device: str
    node_device: CatalogueDevice

    @property
    def dynamic(self) -> tuple[str, str, int] | None:
        m = self.node_device.mig
        if m is None or self.node_device.kind is not PLACEMENT:
            return None
        return m.parent_uuid, m.profile, m.start

    def overlaps(self, other: Claim) -> bool:
        return bool(set(self.node_device.footprint) & set(other.node_device.footprint))


@dataclass
class Run:
    """What one daemon run ended with."""

    point: str | None  # the crash point it died at, None for a kill from outside
    rc: int | None


@dataclass
class Driver:
    daemon: NodeDaemon
    claims: dict[str, Claim]
    rng: random.Random
    seed: int
    backend: MockBackend
    static_uuids: frozenset[str]
    prepared: set[str] = field(default_factory=set)  # claim names the kubelet sees prepared
    pending: tuple[str, str] | None = None  # (claim, "prepare" | "unprepare") cut off
    violations: list[str] = field(default_factory=list)
    windows: Counter[str] = field(default_factory=Counter)
    outside_kills: int = 0
    calls: int = 0
    namespace: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _how: Launch | None = None

    @property
    def points(self) -> tuple[str, ...]:
        """The crash points this claim set can reach (no dynamic-MIG claim, as on a 1.34
        server: none of the MIG create/destroy points)."""
        if any(c.dynamic for c in self.claims.values()):
            return POINTS
        return tuple(p for p in POINTS if ":mig-" not in p)

    # --- the daemon ---------------------------------------------------------------------

    def start(self, crash_at: str | None) -> None:
        self._how = self._how or self.daemon.launch()  # renders the chart once
        self.daemon.start(how=self._how, env={CRASH_ENV: crash_at or ""})  # "": no crash
        self.proc = self.daemon.proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stub(self) -> Any:
        channel = grpc.insecure_channel(f"unix://{self.daemon.plugin_dir / 'dra.sock'}")
        return dra_v1_pb2_grpc.DRAPluginStub(channel)

    # --- calls as the kubelet makes them ----------------------------------------------------

    def call(self, stub: Any, name: str, op: str) -> str | None:
        """The claim's error ('' on success), or None when the daemon died during the call."""
        c = self.claims[name]
        claim = dra_v1_pb2.Claim(namespace=self.namespace, name=c.name, uid=c.uid)
        self.calls += 1
        try:
            if op == "prepare":
                resp = stub.NodePrepareResources(
                    dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim]), timeout=CALL_TIMEOUT_S
                )
            else:
                resp = stub.NodeUnprepareResources(
                    dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[claim]), timeout=CALL_TIMEOUT_S
                )
        except grpc.RpcError as e:
            # the socket closes a moment before the killed process can be reaped
            assert self.proc is not None
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.violations.append(f"{op} {name}: gRPC error from a live daemon: {e}")
            return None
        return str(resp.claims[c.uid].error)

    def conflicting(self, name: str) -> list[str]:
        me = self.claims[name]
        return [o for o in self.prepared if o != name and me.overlaps(self.claims[o])]

    def apply(self, stub: Any, name: str, op: str) -> bool:
        """One call and its bookkeeping; False when the daemon died under it."""
        blocked = self.conflicting(name) if op == "prepare" else []
        error = self.call(stub, name, op)
        if error is None:
            self.pending = (name, op)
            return False
        if blocked:
            if not error:
                self.violations.append(f"{name} prepared while {blocked} held the device")
                self.prepared.add(name)
            elif "already prepared" not in error:
                self.violations.append(f"{name}: unexpected error while blocked: {error}")
            return True
        if error:
            self.pending = (name, op)  # must succeed when retried
            self.violations.append(f"{op} {name} failed on a live daemon: {error}")
            return True
        if op == "prepare":
            self.prepared.add(name)
        else:
            self.prepared.discard(name)
        self.pending = None
        return True

    def resolve_pending(self, stub: Any) -> bool:
        """Retry the call a kill cut off (the next run may cut it off again: a crash is not
        an answer; an error from a live daemon is, and is a violation)."""
        if self.pending is None:
            return True
        return self.apply(stub, *self.pending)

    def stream(self, stub: Any) -> None:
        for _ in range(OPS_PER_RUN):
            if not self.alive():
                return
            name = self.rng.choice(sorted(self.claims))
            op = "unprepare" if name in self.prepared else "prepare"
            if not self.apply(stub, name, op):
                return

    # --- the invariants -------------------------------------------------------------------

    def check(self, when: str) -> None:
        bad = self.violations
        before = len(bad)
        cp = json.loads((self.daemon.plugin_dir / "checkpoint.json").read_text())["claims"]
        by_uid = {c.uid: n for n, c in self.claims.items()}
        entries = {by_uid.get(uid, uid): e for uid, e in cp.items()}
        if set(entries) != self.prepared:
            bad.append(
                f"{when}: checkpoint holds {sorted(entries)}, the kubelet sees prepared "
                f"{sorted(self.prepared)}"
            )
        specs = {
            by_uid.get(p.name.split("_", 1)[1].removesuffix(".json"), p.name)
            for p in self.daemon.cdi_dir.glob(spec_file_name("*"))
        }
        if specs != self.prepared:
            bad.append(f"{when}: CDI specs for {sorted(specs)}, prepared {sorted(self.prepared)}")
        migs = self.backend.inventory().mig_devices
        static = {m.uuid for m in migs if m.parent_index == STATIC_GPU}
        if static != self.static_uuids:
            bad.append(f"{when}: static MIG instances changed: {sorted(static)}")
        dynamic = [m for m in migs if m.parent_index in DYNAMIC]
        held = {}
        for name in sorted(self.prepared):
            c, e = self.claims[name], entries.get(name)
            if e is None:
                continue
            if e["state"] != "prepared":
                bad.append(f"{when}: {name} is {e['state']!r} in the checkpoint")
            (dev,) = e["devices"]
            spec_path = self.daemon.cdi_dir / spec_file_name(c.uid)
            if spec_path.exists():
                env = json.loads(spec_path.read_text())["containerEdits"]["env"]
                if f"NVIDIA_VISIBLE_DEVICES={dev['uuid']}" not in env:
                    bad.append(f"{when}: {name}: CDI spec {env} does not name {dev['uuid']}")
            if c.dynamic:
                parent, profile, start = c.dynamic
                at = [
                    m
                    for m in dynamic
                    if (m.parent_uuid, m.profile, m.placement_start) == (parent, profile, start)
                ]
                if len(at) != 1 or at[0].uuid != dev["uuid"]:
                    bad.append(
                        f"{when}: {name}: instances at its placement {[m.uuid for m in at]}, "
                        f"checkpoint says {dev['uuid']}"
                    )
                held.update({m.uuid: name for m in at})
        strays = [m.uuid for m in dynamic if m.uuid not in held]
        if strays:
            bad.append(f"{when}: MIG instances no claim holds: {strays}")
        names = sorted(self.prepared)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if self.claims[a].overlaps(self.claims[b]):
                    bad.append(f"{when}: {a} and {b} are both prepared on one device")
        if len(bad) > before:
            bad.append(f"(seed {self.seed}; daemon log tail)\n{self.daemon.logs(30)}")

    # --- one run ----------------------------------------------------------------------------

    def run_once(self, index: int, point: str | None) -> Run:
        crash_at = f"{point}:{self.rng.randint(1, 2)}" if point else None
        offset = self.daemon.log_file.stat().st_size if self.daemon.log_file.exists() else 0
        self.start(crash_at)
        stub = self.stub()
        timer = None
        if point is None:
            timer = threading.Timer(self.rng.uniform(0.02, 0.5), self._kill)
            timer.start()
        if self.resolve_pending(stub) and self.alive():
            self.check(f"run {index} start")
            self.stream(stub)
        if timer is not None:
            timer.cancel()
        self._kill()
        assert self.proc is not None
        rc = self.proc.wait(10)
        with self.daemon.log_file.open("rb") as f:
            f.seek(offset)
            log = f.read().decode("utf-8", "replace")
        died_at = next((p for p in POINTS if f"gpudra crashpoint {p}: SIGKILL" in log), None)
        if died_at is not None:
            self.windows[died_at] += 1
        else:
            self.outside_kills += 1
        if rc != -9:
            self.violations.append(f"run {index}: daemon exited {rc}, not by SIGKILL")
        return Run(point=died_at, rc=rc)

    def _kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()


@pytest.fixture
def driver(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    cluster: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Driver]:
    seed = int(os.environ.get("GPUDRA_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"crash suite seed: {seed} (GPUDRA_CRASH_SEED={seed} replays it)")
    node = make_node("crash")
    root = Path(os.path.realpath("/tmp")) / f"gpudra-crash-{node}"
    daemon = NodeDaemon(
        node,
        PROFILE,
        cluster.kubeconfig,
        root,
        ["--dynamic-mig-gpus", ",".join(str(i) for i in sorted(DYNAMIC))],
    )
    daemon.plugin_dir.mkdir(parents=True, exist_ok=True)
    daemon.boot_id_file.parent.mkdir(parents=True, exist_ok=True)
    daemon.boot_id_file.write_text("boot-1\n")
    backend = MockBackend(load_machine(PROFILE), node_name=node, state_file=daemon.state_file)
    gpus = backend.inventory().gpus
    for start in (0, 4):
        backend.create_mig_device(gpus[STATIC_GPU].uuid, "3g.40gb", start)
    static = frozenset(m.uuid for m in backend.inventory().mig_devices)
    known = build_catalogue(backend.inventory(), dynamic=DYNAMIC).devices
    migs = backend.inventory().mig_devices
    claims = {}
    # 1.34 publishes the dynamic-MIG GPUs as static MIG (no instances there: no devices)
    partitionable = kube.server_version()[1] >= 35
    for name, (index, profile, start) in CLAIMS.items():
        if index in DYNAMIC and not partitionable:
            continue
        gpu = gpus[index]
        if not profile:
            dev = gpu_device_name(gpu)
        elif index in DYNAMIC:
            at = MigIdentity(gpu.uuid, profile, start)
            dev = next(n for n, d in known.items() if d.kind is PLACEMENT and d.mig == at)
        else:
            (m,) = [
                m
                for m in migs
                if (m.parent_index, m.profile, m.placement_start) == (index, profile, start)
            ]
            dev = next(n for n, d in known.items() if d.uuid == m.uuid)
        _, n, uid = allocated_claim(
            kube, namespace, name, driver=DRIVER_NAME, pool=node, device=dev, node=node
        )
        claims[name] = Claim(name=n, uid=uid, device=dev, node_device=known[dev])
    d = Driver(
        daemon=daemon,
        claims=claims,
        rng=random.Random(seed),
        seed=seed,
        backend=backend,
        static_uuids=static,
        namespace=namespace,
    )
    yield d
    d._kill()
    shutil.rmtree(root, ignore_errors=True)


def test_sigkill_at_every_step_never_loses_or_doubles_a_device(driver: Driver) -> None:
    kills = int(os.environ.get("GPUDRA_CRASH_KILLS") or 100)
    started = time.monotonic()
    # a third of the runs are killed from outside at a random moment; the others at a crash
    # point, each point in turn (shuffled), so every window is aimed at
    order: list[str | None] = []
    while len(order) < kills:
        points = driver.points
        batch: list[str | None] = [*points, *points[:4], None, None, None, None, None, None]
        driver.rng.shuffle(batch)
        order.extend(batch)
    for i, point in enumerate(order[:kills]):
        driver.run_once(i, point)
    # a last, clean run: the cut-off call is finished, the state checked, everything released
    driver.start(None)
    stub = driver.stub()
    for _ in range(MAX_RETRIES):
        if driver.pending is None:
            break
        driver.resolve_pending(stub)
    if driver.pending is not None:
        driver.violations.append(f"{driver.pending} still not done after {MAX_RETRIES} tries")
    driver.check("final")
    for name in sorted(driver.prepared):
        driver.apply(stub, name, "unprepare")
    driver.check("after releasing everything")
    driver._kill()
    elapsed = time.monotonic() - started
    print(
        f"crash suite: seed {driver.seed}, {kills} kills ({sum(driver.windows.values())} at "
        f"crash points, {driver.outside_kills} from outside), {driver.calls} calls, "
        f"windows {dict(sorted(driver.windows.items()))}, "
        f"{len(driver.violations)} violations, {elapsed:.0f}s"
    )
    assert not driver.violations, "\n".join(driver.violations[:20])
    missed = [p for p in driver.points if driver.windows[p] < 1]
    assert not missed, f"crash points never hit (seed {driver.seed}): {missed}"
