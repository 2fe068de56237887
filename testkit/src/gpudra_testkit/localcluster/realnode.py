"""`RealNode`: a real kubelet and containerd joining the local control plane as a node.

Beside kwok's fake nodes, a real node runs pods for real: containerd (built from the Go module
proxy) with Debian's runc and CNI plugins, the kubelet of the cluster's version with its own
``system:node`` credentials, a pause image and workload images made locally from a static
busybox (`gpudra_testkit.localcluster.ociimage`; nothing is pulled).  DRA kubelet plugins
register in ``layout.registry_dir``; containerd reads CDI specs from ``layout.cdi_dir``.

Ownership: everything lives in one work dir, except what the kubelet, containerd and CNI write
elsewhere whatever their config says; `gpudra_testkit.localcluster.hoststate` records the host
before start and `stop` puts it back (containers killed, mounts, netns, links, iptables chains,
cgroups, sysctls, the /etc/hosts line).  Needs root.  One real node per host: the kubelet's
device-plugin socket path and the ``kubepods`` cgroup tree are host-wide.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpudra.kube import KubeClient, NotFound, resources
from gpudra_testkit.localcluster import hoststate, kubeconfig, nodeconfig, ociimage, pki, probes
from gpudra_testkit.localcluster.binaries import NodeBinaries, locate_node
from gpudra_testkit.localcluster.featuregates import ApiSettings
from gpudra_testkit.localcluster.nodes import wait_node_ready
from gpudra_testkit.localcluster.process import Component, is_running, terminate

STATE_FILE = "realnode.json"
HOSTS_MARK = "# gpudra-real-node"
WORKLOAD_IMAGES = ("docker.io/library/busybox:1.37", "docker.io/library/busybox:latest")
REAL_NODE_LABEL = "gpudra.io/real-node"


class RealNodeError(RuntimeError):
    """The real node could not start (the message says which part and where its log is)."""


def check_host() -> list[str]:
    """What this host lacks for a real node (empty: it can run one)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: the kubelet, containerd and runc need root")
    for name in ("iptables-save", "nft", "ip", "umount"):
        if shutil.which(name) is None:
            problems.append(f"{name} not found (make node-prereqs)")
    return problems


class RealNode:
    """One real node of a `LocalCluster` (started by it, or on its own for tests)."""

    def __init__(
        self,
        *,
        name: str,
        work_dir: Path,
        server: str,
        pki_: pki.Pki,
        settings: ApiSettings,
        k8s_version: str,
        binaries: NodeBinaries | None = None,
        labels: dict[str, str] | None = None,
        detach: bool = False,
    ) -> None:
        self.name = name
        self.server = server
        self.pki = pki_
        self.settings = settings
        self.binaries = binaries or locate_node(k8s_version)
        self.labels = {REAL_NODE_LABEL: "true", **(labels or {})}
        self.detach = detach
        self.layout = nodeconfig.NodeLayout(
            name=name,
            work_dir=work_dir,
            kubelet_port=probes.free_port(),
            kubelet_healthz_port=probes.free_port(),
        )
        self.containerd: Component | None = None
        self.kubelet: Component | None = None
        self.before: hoststate.HostState | None = None
        self.startup_seconds = 0.0

    # -- start -----------------------------------------------------------------------------------

    def start(self, client: KubeClient, *, timeout: float = 120.0) -> None:
        problems = check_host()
        if problems:
            raise RealNodeError("cannot run a real node here: " + "; ".join(problems))
        began = time.monotonic()
        lay = self.layout
        if lay.work_dir.exists():
            shutil.rmtree(lay.work_dir)
        for d in (lay.work_dir, lay.cdi_dir, lay.cni_conf_dir, lay.registry_dir, lay.images_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.before = hoststate.snapshot()
        self._save_state()
        try:
            self._write_configs()
            self._add_hosts_line()
            self.start_containerd(timeout=timeout)
            self.import_local_images()
            self.start_kubelet(client, timeout=timeout)
        except BaseException:
            self.stop(client)
            raise
        self.startup_seconds = time.monotonic() - began

    def _write_configs(self) -> None:
        lay = self.layout
        lay.containerd_config.write_text(nodeconfig.containerd_toml(lay, self.binaries))
        (lay.cni_conf_dir / "10-gpudra.conflist").write_text(nodeconfig.cni_conflist(lay))
        lay.kubelet_config.write_text(
            nodeconfig.kubelet_config(lay, ca_file=self.pki.ca_cert, gates=self.settings.gates)
        )
        cert, key = pki.client_cert(
            self.pki, f"node-{self.name}", f"/O=system:nodes/CN=system:node:{self.name}"
        )
        lay.kubelet_kubeconfig.write_text(
            kubeconfig.render(
                server=self.server,
                ca_pem=self.pki.ca_cert.read_bytes(),
                client_cert_pem=cert.read_bytes(),
                client_key_pem=key.read_bytes(),
            )
        )
        lay.kubelet_kubeconfig.chmod(0o600)

    def _add_hosts_line(self) -> None:
        """The apiserver reaches a kubelet by its Hostname address first; a loopback node IP is
        refused by the kubelet, so the node's name must resolve to 127.0.0.1."""
        with contextlib.suppress(OSError):
            if socket.gethostbyname(self.name).startswith("127."):
                return
        with hoststate.HOSTS.open("a") as f:
            f.write(f"127.0.0.1 {self.name} {HOSTS_MARK} {self.layout.work_dir}\n")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        shim_dir = str(self.binaries.shim.parent)
        env["PATH"] = f"{shim_dir}:/usr/sbin:/usr/bin:/sbin:/bin"
        return env

    def _component(self, name: str, argv: list[str]) -> Component:
        log = self.layout.work_dir / "logs" / f"{name}.log"
        component = Component(name, argv, log, detach=self.detach, env=self._env())
        component.start()
        return component

    def start_containerd(self, *, timeout: float = 60.0) -> None:
        self.containerd = self._component(
            "containerd", nodeconfig.containerd_argv(self.layout, self.binaries)
        )
        sock = self.layout.containerd_socket
        probes.wait_ready(
            self.containerd,
            lambda: sock.exists() and self.ctr("version", check=False).returncode == 0,
            deadline=time.monotonic() + timeout,
            what=f"containerd socket {sock}",
        )

    def start_kubelet(self, client: KubeClient, *, timeout: float = 120.0) -> None:
        argv = nodeconfig.kubelet_argv(self.layout, self.binaries, labels=self.labels)
        self.kubelet = self._component("kubelet", argv)
        deadline = time.monotonic() + timeout

        def ready() -> bool:
            try:
                wait_node_ready(client, self.name, timeout=0.0)
            except (NotFound, TimeoutError):
                return False
            return True

        probes.wait_ready(self.kubelet, ready, deadline=deadline, what=f"node {self.name} Ready")
        self._save_state()

    def stop_kubelet(self) -> None:
        """SIGTERM the kubelet (its containers keep running, as on a real node)."""
        if self.kubelet is not None:
            self.kubelet.stop(grace=15.0)
            self.kubelet = None

    def restart_kubelet(self, client: KubeClient, *, timeout: float = 120.0) -> None:
        self.stop_kubelet()
        self.start_kubelet(client, timeout=timeout)

    def stop_containerd(self) -> None:
        if self.containerd is not None:
            self.containerd.stop(grace=15.0)
            self.containerd = None

    def power_off(self) -> None:
        """The node loses power: the kubelet, every container and containerd die, and what
        lives on tmpfs (the CDI specs in /var/run/cdi, containerd's state) is gone.  Persistent
        state (the kubelet's root dir, containerd's images, plugin checkpoints) survives."""
        if self.kubelet is not None:
            self.kubelet.stop(grace=0.0)
            self.kubelet = None
        with contextlib.suppress(Exception):
            self.kill_containers()
        self.stop_containerd()
        _kill_strays(self.layout.containerd_socket, self.before)
        for spec in self.layout.cdi_dir.iterdir():
            spec.unlink()
        shutil.rmtree(self.layout.work_dir / "containerd-state", ignore_errors=True)

    def power_on(self, client: KubeClient, *, timeout: float = 120.0) -> None:
        """Boot again: containerd, then the kubelet (a node daemon is the caller's)."""
        self.start_containerd(timeout=timeout)
        self.start_kubelet(client, timeout=timeout)

    # -- images ----------------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [*_ctr_argv(self.binaries.ctr, self.layout.containerd_socket), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env=self._env(),
        )
        if check and p.returncode != 0:
            raise RealNodeError(f"ctr {' '.join(args)} failed: {p.stderr.strip()}")
        return p

    def import_image(self, tarball: Path) -> None:
        """Import an OCI image tarball into the node's containerd (the CRI namespace)."""
        self.ctr("images", "import", "--no-unpack=false", str(tarball))

    def import_local_images(self) -> None:
        """The pause image and the busybox workload images the examples name."""
        layer = ociimage.busybox_layer(self.binaries.busybox)
        pause = ociimage.ImageConfig(entrypoint=["/bin/sleep", "infinity"], env=("PATH=/bin",))
        tars = [
            ociimage.write_image(
                self.layout.images_dir / "pause.tar", nodeconfig.PAUSE_IMAGE, [layer], pause
            )
        ]
        workload = ociimage.ImageConfig(cmd=["sh"], env=("PATH=/bin:/usr/bin",))
        for i, name in enumerate(WORKLOAD_IMAGES):
            out = self.layout.images_dir / f"workload-{i}.tar"
            tars.append(ociimage.write_image(out, name, [layer], workload))
        for t in tars:
            self.import_image(t.path)

    # -- stop ------------------------------------------------------------------------------------

    def drain(self, client: KubeClient, *, timeout: float = 30.0) -> list[str]:
        """Delete the pods bound to this node and wait until the kubelet has let them go;
        returns those still there."""
        selector = f"spec.nodeName={self.name}"
        with contextlib.suppress(Exception):
            for pod in client.list(resources.PODS, field_selector=selector).items:
                meta = pod["metadata"]
                with contextlib.suppress(NotFound):
                    client.delete(
                        resources.PODS,
                        meta["name"],
                        namespace=meta["namespace"],
                        grace_period_seconds=1,
                    )
        deadline = time.monotonic() + timeout
        left: list[str] = []
        while time.monotonic() < deadline:
            try:
                pods = client.list(resources.PODS, field_selector=selector).items
            except Exception:
                return left
            left = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
            if not left:
                break
            time.sleep(0.3)
        return left

    def kill_containers(self) -> None:
        """Kill and delete every container containerd runs for the kubelet (sandboxes too)."""
        if self.containerd is None or self.containerd.exit_code() is not None:
            return
        _sweep_containers(lambda *args: self.ctr(*args, check=False).stdout)

    def stop(self, client: KubeClient | None = None, *, drain: bool = True) -> list[str]:
        """Stop the node and put the host back as it was; returns what still differs."""
        if client is not None and drain and self.kubelet is not None:
            self.drain(client, timeout=20.0)
        self.stop_kubelet()
        with contextlib.suppress(Exception):
            self.kill_containers()
        self.stop_containerd()
        left = _put_host_back(self.layout, self.before)
        if client is not None:
            with contextlib.suppress(Exception):  # the API may be gone already
                client.delete(resources.NODES, self.name)
        return left

    # -- detached nodes (``localcluster up --real-nodes``) ---------------------------------------

    def _save_state(self) -> None:
        state = {
            "name": self.name,
            "work_dir": str(self.layout.work_dir),
            "containerd_socket": str(self.layout.containerd_socket),
            "ctr": str(self.binaries.ctr),
            "processes": [
                {"name": c.name, "pid": c.pid, "start_time": c.started_at}
                for c in (self.containerd, self.kubelet)
                if c is not None and c.popen is not None
            ],
            "host_before": self.before.to_json() if self.before else None,
        }
        (self.layout.work_dir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def stop_detached(work_dir: Path) -> list[str]:
    """``localcluster down`` for a real node started detached: stop its kubelet, kill its
    containers, stop containerd, restore the host.  Returns what still differs."""
    state: dict[str, Any] = json.loads((work_dir / STATE_FILE).read_text())
    procs = {int(p["pid"]): p.get("start_time") for p in state["processes"]}
    kubelet = [p for p in state["processes"] if p["name"] == "kubelet"]
    terminate({int(p["pid"]): p.get("start_time") for p in kubelet}, grace=15.0)
    ctr = _ctr_argv(state["ctr"], state["containerd_socket"])

    def run(*args: str) -> str:
        p = subprocess.run([*ctr, *args], capture_output=True, text=True, check=False, timeout=60)
        return p.stdout

    if any(is_running(pid, st) for pid, st in procs.items()):
        _sweep_containers(run)
    terminate(procs, grace=15.0)
    layout = nodeconfig.NodeLayout(state["name"], work_dir, 0, 0)
    return _put_host_back(layout, hoststate.HostState.from_json(state["host_before"]))


# -- shared by attached and detached nodes ---------------------------------------------------


def _ctr_argv(ctr: Path | str, socket_path: Path | str) -> list[str]:
    return [str(ctr), "--address", str(socket_path), "--namespace", "k8s.io"]


def _sweep_containers(ctr: Callable[..., str]) -> None:
    """Kill and delete every task and container of the CRI namespace; ``ctr(*args)`` runs
    ``ctr`` against the node's containerd and returns its stdout."""
    tasks = ctr("tasks", "ls", "-q").split()
    for task in tasks:
        ctr("tasks", "kill", "--signal", "SIGKILL", task)
    for task in tasks:
        ctr("tasks", "delete", "--force", task)
    for container in ctr("containers", "ls", "-q").split():
        ctr("containers", "delete", container)


def _kill_strays(socket_path: Path, before: hoststate.HostState | None) -> None:
    """Shims of this containerd, and anything left in a cgroup the node created."""
    address = str(socket_path).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in argv[0] and address in argv:
                os.kill(int(proc.name), signal.SIGKILL)
    for root, old in (before.cgroups if before else {}).items():
        with contextlib.suppress(OSError):
            for child in Path(root).iterdir():
                if child.is_dir() and child.name not in old:
                    for procs in child.rglob("cgroup.procs"):
                        for pid in procs.read_text().split():
                            with contextlib.suppress(OSError):
                                os.kill(int(pid), signal.SIGKILL)


def _remove_hosts_line(work_dir: Path) -> None:
    text = hoststate.HOSTS.read_text()
    mark = f"{HOSTS_MARK} {work_dir}"
    kept = [line for line in text.splitlines(keepends=True) if mark not in line]
    if len(kept) != len(text.splitlines(keepends=True)):
        hoststate.write_in_place(hoststate.HOSTS, "".join(kept))


def _put_host_back(layout: nodeconfig.NodeLayout, before: hoststate.HostState | None) -> list[str]:
    """After the node's processes are gone: strays killed, the hosts line removed, the host
    restored to ``before``; returns what still differs."""
    _kill_strays(layout.containerd_socket, before)
    _remove_hosts_line(layout.work_dir)
    if before is None:
        return []
    hoststate.restore(before)
    return hoststate.diff(before, hoststate.snapshot())
