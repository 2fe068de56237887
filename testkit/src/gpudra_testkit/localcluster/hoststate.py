"""What a real node (kubelet, containerd, CNI) changes on the host, recorded and put back.

The kubelet, containerd, runc and the CNI plugins write outside any work directory whatever
their configuration says (docs/DESIGN.md, "Real node"): a ``kubepods`` tree in every
cgroup hierarchy, ``/var/lib/kubelet/device-plugins`` (hard-coded), shim sockets under
``/run/containerd``, the CNI cache ``/var/lib/cni``, network namespaces in ``/run/netns``, the
bridge and veth links, iptables chains (``KUBE-FIREWALL``, ``KUBE-KUBELET-CANARY``,
``KUBE-IPTABLES-HINT``), kernel sysctls the kubelet tunes (``vm.overcommit_memory``,
``kernel.panic``, ...), mounts, and the ``/etc/hosts`` line the node's name needs.

`snapshot` records all of that before the node starts; `restore` removes what appeared since
(and writes back the sysctls), leaving alone what existed before; `diff` says what still
differs, so a test can assert the host is as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Directories whose new entries a real node leaves behind.
WATCHED_TREES = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/netns",
    "/run/containerd",
    "/run/runc",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/cni",
    "/opt/cni",
)
# Sysctls the kubelet sets when protectKernelDefaults is false, plus the ones CNI may touch.
WATCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
IPTABLES = ("iptables", "ip6tables")
HOSTS = Path("/etc/hosts")


@dataclass
class HostState:
    trees: dict[str, list[str]] = field(default_factory=dict)  # root -> paths (None: absent)
    sysctls: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)  # mount points
    links: list[str] = field(default_factory=list)
    iptables: dict[str, list[str]] = field(default_factory=dict)  # tool -> chains and rules
    cgroups: dict[str, list[str]] = field(default_factory=dict)  # hierarchy -> top-level dirs
    hosts: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostState:
        return cls(**data)


def _tree(root: str) -> list[str]:
    base = Path(root)
    if not base.exists() and not base.is_symlink():
        return []
    out = [root]
    for parent, dirs, files in os.walk(base):
        out += [str(Path(parent, n)) for n in dirs + files]
    return sorted(out)


def _sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            points.append(parts[1].encode().decode("unicode_escape"))
    return points


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    if shutil.which(argv[0]) is None:
        return None
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _iptables(tool: str) -> list[str]:
    """Every table's chains (``*table :CHAIN``) and rules (``*table -A ...``)."""
    p = _run([f"{tool}-save"])
    if p is None or p.returncode != 0:
        return []
    out, table = [], ""
    for line in p.stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out.append(f"*{table} :{line[1:].split()[0]}")
        elif line.startswith("-A "):
            out.append(f"*{table} {line}")
    return out


def _cgroup_hierarchies() -> list[str]:
    roots = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("cgroup", "cgroup2"):
            roots.append(parts[1])
    return sorted(set(roots))


def _cgroups() -> dict[str, list[str]]:
    out = {}
    for root in _cgroup_hierarchies():
        try:
            out[root] = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        except OSError:
            out[root] = []
    return out


def snapshot() -> HostState:
    sysctls = {n: v for n in WATCHED_SYSCTLS if (v := _sysctl(n)) is not None}
    return HostState(
        trees={root: _tree(root) for root in WATCHED_TREES},
        sysctls=sysctls,
        mounts=sorted(set(_mounts())),
        links=_links(),
        iptables={tool: _iptables(tool) for tool in IPTABLES},
        cgroups=_cgroups(),
        hosts=HOSTS.read_text() if HOSTS.exists() else "",
    )


def diff(before: HostState, after: HostState) -> list[str]:
    """What differs, one line each (empty: the host is as it was)."""
    out = []
    for root in WATCHED_TREES:
        old, new = set(before.trees.get(root, [])), set(after.trees.get(root, []))
        out += [f"new path {p}" for p in sorted(new - old)]
        out += [f"path gone {p}" for p in sorted(old - new)]
    for name in sorted(set(before.sysctls) | set(after.sysctls)):
        if before.sysctls.get(name) != after.sysctls.get(name):
            out.append(f"sysctl {name}: {before.sysctls.get(name)} -> {after.sysctls.get(name)}")
    out += [f"new mount {m}" for m in sorted(set(after.mounts) - set(before.mounts))]
    out += [f"mount gone {m}" for m in sorted(set(before.mounts) - set(after.mounts))]
    out += [f"new link {n}" for n in sorted(set(after.links) - set(before.links))]
    out += [f"link gone {n}" for n in sorted(set(before.links) - set(after.links))]
    for tool in IPTABLES:
        old, new = set(before.iptables.get(tool, [])), set(after.iptables.get(tool, []))
        out += [f"{tool}: new {e}" for e in sorted(new - old)]
        out += [f"{tool}: gone {e}" for e in sorted(old - new)]
    for root in sorted(set(before.cgroups) | set(after.cgroups)):
        old, new = set(before.cgroups.get(root, [])), set(after.cgroups.get(root, []))
        out += [f"new cgroup {root}/{c}" for c in sorted(new - old)]
    if before.hosts != after.hosts:
        out.append("/etc/hosts changed")
    return out


def _umount(point: str) -> None:
    with contextlib.suppress(OSError):
        subprocess.run(["umount", point], capture_output=True, check=False, timeout=30)
        if point in _mounts():
            subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)


def _rmdir_cgroup(path: Path) -> None:
    """Remove a cgroup and its children (deepest first); a cgroup dir is removed by rmdir."""
    for parent, dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
        for d in dirs:
            with contextlib.suppress(OSError):
                Path(parent, d).rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _iptables_undo(tool: str, before: list[str]) -> None:
    old = set(before)
    now = _iptables(tool)
    new_rules = [e for e in now if e not in old and " -A " in e]
    new_chains = [e for e in now if e not in old and " :" in e]
    for entry in new_rules:
        table, _, rule = entry[1:].partition(" ")
        _run([tool, "-w", "-t", table, "-D", *rule.split()[1:]])
    for entry in new_chains:
        table, _, chain = entry[1:].partition(" :")
        _run([tool, "-w", "-t", table, "-F", chain])
        _run([tool, "-w", "-t", table, "-X", chain])
    # With the nf_tables backend a table exists once anything used it: drop the new ones.
    old_tables = {e[1:].partition(" ")[0] for e in old}
    new_tables = {e[1:].partition(" ")[0] for e in _iptables(tool)} - old_tables
    family = "ip" if tool == "iptables" else "ip6"
    for table in sorted(new_tables):
        _run(["nft", "delete", "table", family, table])


def restore(before: HostState) -> None:
    """Remove what appeared since ``before`` and write back the changed sysctls."""
    old_mounts = set(before.mounts)
    for point in sorted(set(_mounts()) - old_mounts, key=len, reverse=True):
        _umount(point)
    for name in sorted(set(_links()) - set(before.links)):
        _run(["ip", "link", "delete", name])
    for tool in IPTABLES:
        _iptables_undo(tool, before.iptables.get(tool, []))
    for root, old_dirs in before.cgroups.items():
        with contextlib.suppress(OSError):
            for child in Path(root).iterdir():
                if child.is_dir() and child.name not in old_dirs:
                    _rmdir_cgroup(child)
    for root in WATCHED_TREES:
        old = set(before.trees.get(root, []))
        for path in sorted(set(_tree(root)) - old, key=len, reverse=True):
            p = Path(path)
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    for name, value in before.sysctls.items():
        if _sysctl(name) != value:
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / name).write_text(value + "\n")
    if HOSTS.exists() and HOSTS.read_text() != before.hosts:
        write_in_place(HOSTS, before.hosts)


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a file without replacing its inode (/etc/hosts may be a bind mount)."""
    with path.open("r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()
