"""Which gated pods are decided together (pure).

A pod carrying the scheduling gate ``gpudra.io/topology`` is the controller's.  Pods with
the label ``gpudra.io/gang`` (same namespace) form a gang of ``gpudra.io/gang-size`` pods
that is placed all or nothing; every other gated pod is a group of one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpudra.api.meta import is_deleting, labels_of, name_of, namespace_of
from gpudra.api.pod import pod_claim_refs, pod_gate_names, pod_generated_claims, pod_is_finished

GATE = "gpudra.io/topology"
GANG_LABEL = "gpudra.io/gang"
GANG_SIZE_LABEL = "gpudra.io/gang-size"


@dataclass
class Group:
    key: str  # namespace/pod or namespace/gang:<name>
    pods: list[dict[str, Any]]  # the gated members: the ones still to decide
    size: int
    problem: str = ""  # a user error that blocks the whole group
    released: int = 0  # gang members already ungated (their claims were written first)

    @property
    def complete(self) -> bool:
        return len(self.pods) + self.released >= self.size


def is_gated(pod: Mapping[str, Any]) -> bool:
    return GATE in pod_gate_names(pod)


def is_live(pod: Mapping[str, Any]) -> bool:
    """Not finished: a Succeeded or Failed pod (e.g. of an earlier run of the gang) is no
    member of anything."""
    return not pod_is_finished(pod)


def pod_key(pod: Mapping[str, Any]) -> str:
    return f"{namespace_of(pod)}/{name_of(pod)}"


def _gang_key(pod: Mapping[str, Any], gang: str) -> str:
    return f"{namespace_of(pod)}/gang:{gang}"


def group_pods(pods: list[dict[str, Any]]) -> list[Group]:
    """Gated, live, not deleted pods grouped into singles and gangs (stable order); ungated
    live members count towards their gang's size."""
    gangs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    released: dict[str, int] = defaultdict(int)
    out: list[Group] = []
    for pod in sorted(pods, key=pod_key):
        if is_deleting(pod) or not is_live(pod):
            continue
        gang = labels_of(pod).get(GANG_LABEL)
        if not is_gated(pod):
            # an ungated gang member: a pass wrote every claim of the gang, then ungated this
            # pod and stopped (a crash) - it still counts towards the gang
            if gang:
                released[_gang_key(pod, gang)] += 1
            continue
        if gang:
            gangs[_gang_key(pod, gang)].append(pod)
        else:
            out.append(Group(key=pod_key(pod), pods=[pod], size=1))
    for key, members in sorted(gangs.items()):
        sizes = {labels_of(p).get(GANG_SIZE_LABEL) for p in members}
        group = Group(key=key, pods=members, size=len(members), released=released[key])
        if len(sizes) != 1:
            group.problem = (
                f"pods of gang {key.split(':', 1)[1]} disagree on {GANG_SIZE_LABEL}: "
                + ", ".join(sorted(f"{pod_key(p)}={_size_label(p)}" for p in members))
            )
        else:
            raw = next(iter(sizes))
            try:
                group.size = int(raw or "")
                if group.size < 1:
                    raise ValueError
            except ValueError:
                group.problem = (
                    f"gang {key.split(':', 1)[1]}: {GANG_SIZE_LABEL} must be a positive "
                    f"integer, got {raw!r}"
                )
        out.append(group)
    return out


def _size_label(pod: Mapping[str, Any]) -> str:
    return str(labels_of(pod).get(GANG_SIZE_LABEL, "<missing>"))


def claim_names(pod: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(claim names the pod uses, pod claim entries whose generated claim does not exist yet)."""
    generated = pod_generated_claims(pod)
    names, missing = [], []
    for rc in pod_claim_refs(pod):
        if rc.get("resourceClaimName"):
            names.append(rc["resourceClaimName"])
        elif rc.get("name") in generated:
            names.append(generated[str(rc.get("name"))])
        else:
            missing.append(str(rc.get("name")))
    return names, missing
