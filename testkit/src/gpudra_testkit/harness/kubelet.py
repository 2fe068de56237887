"""A kubelet stand-in for tests: it speaks the real gRPC contracts over unix sockets.

What it does is what the kubelet does for DRA (``pkg/kubelet/cm/dra`` and
``pkg/kubelet/pluginmanager`` in https://github.com/kubernetes/kubernetes): watch the plugin
registry directory (ignoring dot files), call ``GetInfo`` with a 1 s timeout, pick the first
service version *in the plugin's order* that it knows, confirm with
``NotifyRegistrationStatus``, then call NodePrepareResources / NodeUnprepareResources for the
claims of pods bound to its node, one call per driver per pod. ``restart()`` simulates a kubelet
restart: it wipes the node's ResourceSlices and registers the plugins again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gpudra._proto import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from gpudra.kube import KubeClient, NotFound, resources

KNOWN_VERSIONS = {
    "v1.DRAPlugin": (dra_v1_pb2, dra_v1_pb2_grpc),
    "v1beta1.DRAPlugin": (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc),
}
GET_INFO_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 45.0


class RegistrationFailed(Exception):
    pass


@dataclass
class Plugin:
    name: str
    endpoint: str
    version: str
    reg_socket: Path
    _channel: grpc.Channel
    _pb2: Any
    _stub: Any

    def prepare(self, claims: list[tuple[str, str, str]]) -> dict[str, Any]:
        """(namespace, name, uid) -> the per-claim responses, keyed by UID."""
        req = self._pb2.NodePrepareResourcesRequest(
            claims=[self._pb2.Claim(namespace=ns, name=n, uid=u) for ns, n, u in claims]
        )
        resp = self._stub.NodePrepareResources(req, timeout=CALL_TIMEOUT_S)
        return dict(resp.claims)

    def unprepare(self, claims: list[tuple[str, str, str]]) -> dict[str, str]:
        req = self._pb2.NodeUnprepareResourcesRequest(
            claims=[self._pb2.Claim(namespace=ns, name=n, uid=u) for ns, n, u in claims]
        )
        resp = self._stub.NodeUnprepareResources(req, timeout=CALL_TIMEOUT_S)
        return {uid: r.error for uid, r in resp.claims.items()}

    def close(self) -> None:
        self._channel.close()


@dataclass
class KubeletHarness:
    node_name: str
    registry_dir: Path
    kube: KubeClient
    plugins: dict[str, Plugin] = field(default_factory=dict)
    prepared: dict[str, dict[str, tuple[str, str, str]]] = field(default_factory=dict)

    def _register(self, reg_socket: Path) -> Plugin:
        with grpc.insecure_channel(f"unix://{reg_socket}") as ch:
            reg = pluginregistration_v1_pb2_grpc.RegistrationStub(ch)
            info = reg.GetInfo(pluginregistration_v1_pb2.InfoRequest(), timeout=GET_INFO_TIMEOUT_S)
            error = ""
            if info.type != "DRAPlugin":
                error = f"unsupported plugin type {info.type!r}"
            version = next((v for v in info.supported_versions if v in KNOWN_VERSIONS), None)
            if version is None and not error:
                error = f"none of {list(info.supported_versions)} is supported"
            reg.NotifyRegistrationStatus(
                pluginregistration_v1_pb2.RegistrationStatus(
                    plugin_registered=not error, error=error
                ),
                timeout=GET_INFO_TIMEOUT_S,
            )
        if error or version is None:
            raise RegistrationFailed(error)
        endpoint = info.endpoint or str(reg_socket)
        channel = grpc.insecure_channel(f"unix://{endpoint}")
        grpc.channel_ready_future(channel).result(timeout=GET_INFO_TIMEOUT_S)
        pb2, pb2_grpc = KNOWN_VERSIONS[version]
        return Plugin(
            name=info.name,
            endpoint=endpoint,
            version=version,
            reg_socket=reg_socket,
            _channel=channel,
            _pb2=pb2,
            _stub=pb2_grpc.DRAPluginStub(channel),
        )

    def wait_for_plugin(self, driver: str, timeout: float = 20.0) -> Plugin:
        """Poll the registry directory until ``driver`` registers (as the plugin watcher does)."""
        deadline = time.monotonic() + timeout
        last = "no registration socket yet"
        while time.monotonic() < deadline:
            for sock in sorted(self.registry_dir.glob("*.sock")):
                if sock.name.startswith("."):
                    continue
                try:
                    plugin = self._register(sock)
                except (grpc.RpcError, RegistrationFailed, grpc.FutureTimeoutError) as e:
                    last = f"{sock}: {e}"
                    continue
                if plugin.name == driver:
                    old = self.plugins.pop(driver, None)
                    if old:
                        old.close()
                    self.plugins[driver] = plugin
                    return plugin
                plugin.close()
            time.sleep(0.1)
        raise TimeoutError(f"driver {driver} did not register within {timeout}s ({last})")

    def pod_claims(self, pod: dict[str, Any], driver: str) -> list[tuple[str, str, str]]:
        """The pod's allocated claims that have devices of ``driver``, as (ns, name, uid)."""
        ns = pod["metadata"]["namespace"]
        out = []
        for st in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
            name = st.get("resourceClaimName")
            if not name:
                continue
            claim = self.kube.get(resources.RESOURCECLAIMS, name, namespace=ns)
            results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
            if any(r.get("driver") == driver for r in results.get("results") or []):
                out.append((ns, name, claim["metadata"]["uid"]))
        for ref in (pod.get("spec") or {}).get("resourceClaims") or []:
            name = ref.get("resourceClaimName")
            if name and all(c[1] != name for c in out):
                claim = self.kube.get(resources.RESOURCECLAIMS, name, namespace=ns)
                results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
                if any(r.get("driver") == driver for r in results.get("results") or []):
                    out.append((ns, name, claim["metadata"]["uid"]))
        return out

    def prepare_pod(self, pod: dict[str, Any], driver: str) -> dict[str, Any]:
        """One NodePrepareResources call for the pod's claims of ``driver``."""
        plugin = self.plugins[driver]
        claims = self.pod_claims(pod, driver)
        resp = plugin.prepare(claims)
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.prepared.setdefault(key, {}).update(
            {c[2]: c for c in claims if c[2] in resp and not resp[c[2]].error}
        )
        return resp

    def unprepare_pod(self, namespace: str, name: str, driver: str) -> dict[str, str]:
        claims = list(self.prepared.pop(f"{namespace}/{name}", {}).values())
        return self.plugins[driver].unprepare(claims) if claims else {}

    def sync(self, driver: str) -> None:
        """Prepare claims of new pods bound here; unprepare claims of pods that are gone."""
        pods = self.kube.list(resources.PODS, field_selector=f"spec.nodeName={self.node_name}")
        live = {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in pods.items
            if not p["metadata"].get("deletionTimestamp")
        }
        for key, pod in live.items():
            if key not in self.prepared:
                self.prepare_pod(pod, driver)
        for key in [k for k in self.prepared if k not in live]:
            ns, name = key.split("/", 1)
            self.unprepare_pod(ns, name, driver)

    def wipe_slices(self) -> int:
        """What a starting kubelet does: delete every ResourceSlice of its node."""
        found = self.kube.list(
            resources.RESOURCESLICES, field_selector=f"spec.nodeName={self.node_name}"
        ).items
        for s in found:
            with contextlib.suppress(NotFound):
                self.kube.delete(resources.RESOURCESLICES, s["metadata"]["name"])
        return len(found)

    def restart(self, driver: str) -> Plugin:
        for p in self.plugins.values():
            p.close()
        self.plugins.clear()
        self.wipe_slices()
        return self.wait_for_plugin(driver)

    def close(self) -> None:
        for p in self.plugins.values():
            p.close()
        self.plugins.clear()
