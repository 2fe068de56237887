"""Watch framing and decoding, resource paths and kubeconfig proxy handling (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudra.api.meta import resource_version_of
from gpudra.kube import errors, resources
from gpudra.kube.objects import WatchEvent, decode_watch_line, iter_lines
from gpudra.kube.resources import Resource
from gpudra.kube.transport import Transport, _is_loopback


def _event(kind: str, obj: dict[str, object]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def test_iter_lines_rejoins_split_chunks() -> None:
    a, b = _event("ADDED", {"n": 1}), _event("MODIFIED", {"n": 2})
    stream = a + b
    chunks = [stream[:5], stream[5 : len(a) + 3], stream[len(a) + 3 :]]
    lines = list(iter_lines(chunks))
    assert lines == [a.rstrip(b"\n"), b.rstrip(b"\n")]


def test_iter_lines_keeps_unterminated_tail() -> None:
    assert list(iter_lines([b"x\ny"])) == [b"x", b"y"]


def test_decode_event_and_blank() -> None:
    assert decode_watch_line(_event("ADDED", {"a": 1})) == WatchEvent("ADDED", {"a": 1})
    assert decode_watch_line(b"  \n") is None


def test_error_event_raises_gone() -> None:
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    with pytest.raises(errors.Gone, match="too old"):
        decode_watch_line(_event("ERROR", status))


@pytest.mark.parametrize("line", [b"{not json", b"\xff\xfe{}", b"[1]", b'{"type": "ADDED"}'])
def test_garbage_line_raises_kube_error(line: bytes) -> None:
    """Every malformed line is a KubeError, the one error a watch loop expects (invalid
    UTF-8 used to escape as UnicodeDecodeError and end the watch thread)."""
    with pytest.raises(errors.KubeError):
        decode_watch_line(line)


def test_resource_version_of() -> None:
    assert resource_version_of({"metadata": {"resourceVersion": "42"}}) == "42"
    assert resource_version_of({}) == ""


PATHS = [
    pytest.param(resources.NODES, None, "n1", "", "/api/v1/nodes/n1", id="core-cluster"),
    pytest.param(resources.PODS, "ns", None, "", "/api/v1/namespaces/ns/pods", id="core-list"),
    pytest.param(resources.PODS, None, None, "", "/api/v1/pods", id="all-namespaces"),
    pytest.param(
        resources.PODS, "ns", "p", "status", "/api/v1/namespaces/ns/pods/p/status", id="subresource"
    ),
    pytest.param(
        resources.RESOURCECLAIMS,
        "ns",
        "c",
        "",
        "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c",
        id="group",
    ),
    pytest.param(
        resources.DEVICECLASSES,
        None,
        None,
        "",
        "/apis/resource.k8s.io/v1/deviceclasses",
        id="group-cluster",
    ),
    pytest.param(
        resources.LEASES,
        "kube-node-lease",
        "n1",
        "",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
        id="leases",
    ),
]


@pytest.mark.parametrize(("res", "namespace", "name", "sub", "expected"), PATHS)
def test_paths(
    res: Resource, namespace: str | None, name: str | None, sub: str, expected: str
) -> None:
    assert res.path(namespace=namespace, name=name, subresource=sub) == expected


def test_path_scope_errors() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        resources.PODS.path(name="p")
    with pytest.raises(ValueError, match="cluster-scoped"):
        resources.NODES.path(namespace="x")


def test_api_version() -> None:
    assert resources.PODS.api_version == "v1"
    assert resources.RESOURCESLICES.api_version == "resource.k8s.io/v1"


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("https://127.0.0.1:6443", True),
        ("https://localhost:1", True),
        ("https://[::1]:1", True),
        ("https://10.0.0.1:443", False),
        ("https://k8s.example.com", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    assert _is_loopback(url) is loopback


def test_loopback_kubeconfig_ignores_env_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    transport = Transport.from_kubeconfig(path)
    try:
        assert transport.host == "https://127.0.0.1:6443"
        assert transport._api.configuration.proxy is None
    finally:
        transport.close()


def test_missing_kubeconfig_is_kube_error(tmp_path: Path) -> None:
    with pytest.raises(errors.KubeError, match="cannot load kubeconfig"):
        Transport.from_kubeconfig(tmp_path / "nope")


def test_in_cluster_outside_a_cluster_is_kube_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.KubeError, match="not running in a cluster"):
        Transport.in_cluster()
