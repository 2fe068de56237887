"""Host-state comparison: every kind of change a real node can leave behind is reported."""

from __future__ import annotations

from gpudra_testkit.localcluster.hoststate import HostState, diff, snapshot


def state(**kw: object) -> HostState:
    base = HostState(
        trees={"/var/lib/kubelet": []},
        sysctls={"net/ipv4/ip_forward": "0"},
        mounts=["/"],
        links=["lo"],
        iptables={"iptables": ["*filter :INPUT"]},
        cgroups={"/sys/fs/cgroup/cpu": ["user"]},
        hosts="127.0.0.1 localhost\n",
    )
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def test_an_unchanged_host_has_no_difference() -> None:
    assert diff(state(), state()) == []
    now = snapshot()
    assert diff(now, HostState.from_json(now.to_json())) == []


def test_each_kind_of_leftover_is_named() -> None:
    after = state(
        trees={"/var/lib/kubelet": ["/var/lib/kubelet", "/var/lib/kubelet/device-plugins"]},
        sysctls={"net/ipv4/ip_forward": "1"},
        mounts=["/", "/run/netns/cni-1"],
        links=["lo", "gpudrabr0"],
        iptables={"iptables": ["*filter :INPUT", "*filter :KUBE-FIREWALL"]},
        cgroups={"/sys/fs/cgroup/cpu": ["user", "kubepods"]},
        hosts="127.0.0.1 localhost\n127.0.0.1 n1\n",
    )
    got = diff(state(), after)
    assert got == [
        "new path /var/lib/kubelet",
        "new path /var/lib/kubelet/device-plugins",
        "sysctl net/ipv4/ip_forward: 0 -> 1",
        "new mount /run/netns/cni-1",
        "new link gpudrabr0",
        "iptables: new *filter :KUBE-FIREWALL",
        "new cgroup /sys/fs/cgroup/cpu/kubepods",
        "/etc/hosts changed",
    ]
