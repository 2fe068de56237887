"""A kubelet stand-in for tests: it speaks the real gRPC contracts over unix sockets.

What it does is what the kubelet does for DRA (``pkg/kubelet/cm/dra`` and
``pkg/kubelet/pluginmanager`` in https://github.com/kubernetes/kubernetes): watch the plugin
registry directory (ignoring dot files), call ``GetInfo`` with a 1 s timeout, pick the first
service version *in the plugin's order* that it knows, confirm with
``NotifyRegistrationStatus``, then call NodePrepareResources / NodeUnprepareResources for the
claims of pods bound to its node, one call per driver per pod. ``restart()`` simulates a kubelet
restart: it wipes the node's ResourceSlices and registers the plugins again.

Device health (KEP-4680): when a plugin advertises ``v1alpha1.DRAResourceHealth``,
``Plugin.watch_health()`` holds the ``NodeWatchResources`` stream open on a thread, as the
kubelet's DRA manager does, keeping the last health of every device with the time it was
heard (a device not refreshed within its ``health_check_timeout_seconds`` is Unknown), and
``pod_health`` answers what the kubelet writes into the pod's
``status.containerStatuses[].allocatedResourcesStatus``: per prepared device, its CDI
device ID (the real kubelet's resourceID) and Healthy, Unhealthy or Unknown.
"""

from __future__ import annotations

import contextlib
import threading
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
    drahealth_v1alpha1_pb2,
    drahealth_v1alpha1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from gpudra.kube import KubeClient, NotFound, resources

KNOWN_VERSIONS = {
    "v1.DRAPlugin": (dra_v1_pb2, dra_v1_pb2_grpc),
    "v1beta1.DRAPlugin": (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc),
}
HEALTH_SERVICE = "v1alpha1.DRAResourceHealth"
GET_INFO_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 45.0
DEFAULT_HEALTH_TIMEOUT_S = 30  # the kubelet's, when a device gives none
_HEALTH_NAMES = {0: "Unknown", 1: "Healthy", 2: "Unhealthy"}


@dataclass(frozen=True)
class HeardHealth:
    health: str  # Healthy | Unhealthy | Unknown, as the pod status spells it
    message: str
    last_updated: int  # the plugin's last_updated_time (unix seconds)
    timeout_s: int
    heard_at: float  # monotonic


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
    health_service: bool = False
    health: dict[tuple[str, str], HeardHealth] = field(default_factory=dict)
    health_messages: int = 0
    health_error: str = ""
    _health_call: Any = None
    _health_thread: threading.Thread | None = None
    _health_lock: threading.Lock = field(default_factory=threading.Lock)

    def watch_health(self) -> None:
        """Open NodeWatchResources and keep the last health of every device it names."""
        if not self.health_service:
            raise RuntimeError(f"{self.name} does not advertise {HEALTH_SERVICE}")
        stub = drahealth_v1alpha1_pb2_grpc.DRAResourceHealthStub(self._channel)
        call = stub.NodeWatchResources(drahealth_v1alpha1_pb2.NodeWatchResourcesRequest())
        self._health_call = call

        def run() -> None:
            try:
                for resp in call:
                    now = time.monotonic()
                    # every message is the complete set: the kubelet reconciles against it
                    heard = {
                        (d.device.pool_name, d.device.device_name): HeardHealth(
                            health=_HEALTH_NAMES.get(d.health, "Unknown"),
                            message=d.message,
                            last_updated=d.last_updated_time,
                            timeout_s=d.health_check_timeout_seconds
                            if d.health_check_timeout_seconds > 0
                            else DEFAULT_HEALTH_TIMEOUT_S,
                            heard_at=now,
                        )
                        for d in resp.devices
                    }
                    with self._health_lock:
                        self.health = heard
                        self.health_messages += 1
            except grpc.RpcError as e:
                if e.code() is not grpc.StatusCode.CANCELLED:
                    self.health_error = f"{e.code().name}: {e.details()}"

        self._health_thread = threading.Thread(target=run, name="health-stream", daemon=True)
        self._health_thread.start()

    def device_health(self, pool: str, device: str) -> HeardHealth | None:
        """What the kubelet knows of one device now (Unknown once its timeout passed)."""
        with self._health_lock:
            h = self.health.get((pool, device))
        if h is not None and time.monotonic() - h.heard_at > h.timeout_s:
            return HeardHealth("Unknown", "", h.last_updated, h.timeout_s, h.heard_at)
        return h

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
        if self._health_call is not None:
            self._health_call.cancel()
        self._channel.close()
        if self._health_thread is not None:
            self._health_thread.join(timeout=5)


@dataclass
class KubeletHarness:
    node_name: str
    registry_dir: Path
    kube: KubeClient
    plugins: dict[str, Plugin] = field(default_factory=dict)
    prepared: dict[str, dict[str, tuple[str, str, str]]] = field(default_factory=dict)
    # pod key -> (pool, device, CDI IDs) of every device prepared for it
    prepared_devices: dict[str, list[tuple[str, str, tuple[str, ...]]]] = field(
        default_factory=dict
    )

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
            health_service=HEALTH_SERVICE in info.supported_versions,
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
        # the claim kube-scheduler made for the pod's extended resources (KEP-5004)
        ext = ((pod.get("status") or {}).get("extendedResourceClaimStatus") or {}).get(
            "resourceClaimName"
        )
        refs = [{"resourceClaimName": ext}] if ext else []
        for ref in [*((pod.get("spec") or {}).get("resourceClaims") or []), *refs]:
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
        devices = self.prepared_devices.setdefault(key, [])
        for r in resp.values():
            devices.extend((d.pool_name, d.device_name, tuple(d.cdi_device_ids)) for d in r.devices)
        return resp

    def pod_health(self, namespace: str, name: str, driver: str) -> dict[str, HeardHealth | None]:
        """resourceID -> its health, for every device prepared for the pod: what the kubelet
        puts in the pod's allocatedResourcesStatus, where a device's resourceID is its CDI
        device ID (seen with the 1.37 kubelet); None: never heard."""
        plugin = self.plugins[driver]
        return {
            rid: plugin.device_health(pool, device)
            for pool, device, cdi_ids in self.prepared_devices.get(f"{namespace}/{name}", [])
            for rid in cdi_ids or (f"{driver}/{pool}/{device}",)
        }

    def unprepare_pod(self, namespace: str, name: str, driver: str) -> dict[str, str]:
        """The pod is gone: NodeUnprepareResources for its claims that no other pod still
        uses (the kubelet unprepares a shared claim after its last pod)."""
        claims = list(self.prepared.pop(f"{namespace}/{name}", {}).values())
        self.prepared_devices.pop(f"{namespace}/{name}", None)
        still = {uid for held in self.prepared.values() for uid in held}
        claims = [c for c in claims if c[2] not in still]
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
