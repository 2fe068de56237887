"""`LocalCluster`: a real Kubernetes control plane on 127.0.0.1 for tests and the demo.

etcd -> kube-apiserver -> (kube-controller-manager, kube-scheduler, kwok), each a child process
with its log in the work directory, free ports picked at start (command lines:
`gpudra_testkit.localcluster.commandlines`).  kwok makes annotated fake nodes Ready and pods
bound to them Running, while the real scheduler allocates DRA claims from ResourceSlices and
kcm creates claims from templates; ``real_nodes=1`` (or `add_real_node`) adds a real kubelet
+ containerd node (`gpudra_testkit.localcluster.realnode`) that runs pods for real.  One
feature-gate string, chosen from the version (`gpudra_testkit.localcluster.featuregates`),
goes to every component.

Ownership: whatever `start` launched, `stop` kills (process groups, SIGTERM then SIGKILL), also
when startup fails half-way; attached children die with the Python process (PDEATHSIG).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gpudra.kube import KubeClient, resources
from gpudra_testkit.localcluster import commandlines as cmd
from gpudra_testkit.localcluster import kubeconfig, pki, probes
from gpudra_testkit.localcluster.binaries import Binaries, controlplane_dir, locate
from gpudra_testkit.localcluster.featuregates import ApiSettings, KubeVersion, api_settings
from gpudra_testkit.localcluster.process import Component
from gpudra_testkit.localcluster.realnode import RealNode


class LocalCluster:
    """Context manager: ``with LocalCluster() as c: KubeClient.from_kubeconfig(c.kubeconfig)``.

    ``work_dir`` defaults to a temporary directory that `stop` removes; a given one is kept (its
    logs survive).  ``detach`` starts components that outlive this process (for ``up``).
    """

    def __init__(
        self,
        *,
        version: str | None = None,
        work_dir: Path | None = None,
        binaries: Binaries | None = None,
        detach: bool = False,
        device_taint_rules: bool = False,
        extra_gates: dict[str, bool] | None = None,
        start_timeout: float = 180.0,
        real_nodes: int = 0,
    ) -> None:
        if real_nodes not in (0, 1):
            raise ValueError(
                f"real_nodes={real_nodes}: one real node per host at most (the kubelet's "
                "device-plugin socket and the kubepods cgroup tree are host-wide)"
            )
        self.real_node_count = real_nodes
        self.real_nodes: list[RealNode] = []
        self.pki: pki.Pki | None = None
        self.binaries = binaries or locate(version)
        self.version = KubeVersion.parse(self.binaries.k8s_version)
        self.settings: ApiSettings = api_settings(
            self.version, device_taint_rules=device_taint_rules, extra_gates=extra_gates
        )
        self._own_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="gpudra-cluster-"))
        self.detach = detach
        self.start_timeout = start_timeout
        self.components: list[Component] = []
        self.kubeconfig = self.work_dir / "kubeconfig"
        self.server = ""
        self.startup_seconds = 0.0
        self._client: KubeClient | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and wait until the cluster serves; on failure stop all (and
        keep the work dir, whose logs the error points to)."""
        began = time.monotonic()
        try:
            self._start(deadline=began + self.start_timeout)
        except BaseException:
            self._own_dir = False
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every started component (last started first) and remove an owned work dir."""
        leftovers = []
        for node in reversed(self.real_nodes):
            client = self.client() if self.components else None
            leftovers += [f"{node.name}: {d}" for d in node.stop(client)]
        self.real_nodes = []
        if self._client is not None:
            self._client.close()
            self._client = None
        survivors = [c.name for c in reversed(self.components) if not c.stop()]
        self.components = []
        if self._own_dir and not self.detach:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if survivors:
            raise RuntimeError(f"could not stop: {', '.join(survivors)}")
        if leftovers:
            raise RuntimeError("the real node left the host changed: " + "; ".join(leftovers))

    def release(self) -> dict[str, Any]:
        """Let a detached cluster outlive this object: forget its processes without stopping
        them and return the `state` needed to stop them later."""
        if not self.detach:
            raise RuntimeError("only a detached cluster can be released")
        state = self.state()
        if self._client is not None:
            self._client.close()
            self._client = None
        self.components = []
        self.real_nodes = []
        return state

    def client(self) -> KubeClient:
        """A shared admin client (closed by `stop`)."""
        if self._client is None:
            self._client = KubeClient.from_kubeconfig(self.kubeconfig)
        return self._client

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.components}

    def state(self) -> dict[str, Any]:
        """What ``localcluster down`` needs to find and stop this cluster."""
        return {
            "version": str(self.version),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "feature_gates": self.settings.gates_flag,
            "processes": [
                {"name": c.name, "pid": c.pid, "start_time": c.started_at, "log": str(c.log_path)}
                for c in self.components
            ],
            "real_nodes": [
                {"name": n.name, "work_dir": str(n.layout.work_dir)} for n in self.real_nodes
            ],
        }

    def add_real_node(self, name: str, *, labels: dict[str, str] | None = None) -> RealNode:
        """Start a real kubelet + containerd node (root only; see `RealNode`)."""
        if self.pki is None:
            raise RuntimeError("start the cluster first")
        node = RealNode(
            name=name,
            work_dir=self.work_dir / "nodes" / name,
            server=self.server,
            pki_=self.pki,
            settings=self.settings,
            k8s_version=str(self.version),
            labels=labels,
            detach=self.detach,
        )
        self.real_nodes.append(node)
        node.start(self.client())
        return node

    # -- startup -------------------------------------------------------------------------------

    def _launch(self, name: str, argv: list[str]) -> Component:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "ETCDCTL_API")}
        component = Component(
            name, argv, self.work_dir / "logs" / f"{name}.log", detach=self.detach, env=env
        )
        self.components.append(component)
        component.start()
        return component

    def _start(self, *, deadline: float) -> None:
        wd = self.work_dir
        for stale in ("etcd-data", "logs"):
            shutil.rmtree(wd / stale, ignore_errors=True)
        ports = cmd.Ports(*(probes.free_port() for _ in range(6)))
        self.pki = pki.generate(wd / "pki")
        lay = cmd.Layout(
            binaries=self.binaries,
            settings=self.settings,
            pki=self.pki,
            ports=ports,
            work_dir=wd,
            kubeconfig=self.kubeconfig,
            kwok_stages=controlplane_dir() / "kwok-stages.yaml",
        )
        etcd = self._launch("etcd", cmd.etcd(lay))
        probes.wait_ready(
            etcd, probes.etcd_healthy(ports.etcd_url), deadline=deadline, what="/health"
        )

        self.server = ports.server
        apiserver = self._launch("kube-apiserver", cmd.kube_apiserver(lay))
        creds = lay.pki
        self.kubeconfig.write_text(
            kubeconfig.render(
                server=self.server,
                ca_pem=creds.ca_cert.read_bytes(),
                client_cert_pem=creds.admin_cert.read_bytes(),
                client_key_pem=creds.admin_key.read_bytes(),
            )
        )
        self.kubeconfig.chmod(0o600)
        admin_tls = probes.client_tls(creds.ca_cert, creds.admin_cert, creds.admin_key)
        probes.wait_ready(
            apiserver,
            probes.body_is_ok(f"{self.server}/readyz", admin_tls),
            deadline=deadline,
            what="/readyz",
        )

        kcm = self._launch("kube-controller-manager", cmd.kube_controller_manager(lay))
        self._launch("kube-scheduler", cmd.kube_scheduler(lay))
        self._launch("kwok", cmd.kwok(lay))
        urls = cmd.health_urls(ports)
        for component in self.components[2:]:
            check = probes.body_is_ok(urls[component.name])
            probes.wait_ready(component, check, deadline=deadline, what="/healthz")
        # Pods are admitted only once kcm's serviceaccount controller made `default`.
        client = self.client()
        probes.wait_ready(
            kcm,
            lambda: bool(client.get(resources.SERVICEACCOUNTS, "default", namespace="default")),
            deadline=deadline,
            what="ServiceAccount default/default",
        )
        for i in range(self.real_node_count):
            self.add_real_node(f"real-node-{i}")
