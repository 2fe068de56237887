"""Requests the API server has served, from its own ``apiserver_request_total`` metric."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpudra.kube import KubeClient


def served(
    kube: KubeClient, verbs: Iterable[str], resources: Iterable[str], scope: str | None = None
) -> dict[str, int]:
    """Verb -> requests served so far for ``resources`` (plural names); ``scope`` ("cluster",
    "namespace", "resource") counts only requests of that scope."""
    out = dict.fromkeys(verbs, 0)
    wanted = set(resources)
    for line in kube.get_text("/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        res = re.search(r'resource="([^"]+)"', line)
        if not (verb and res and verb.group(1) in out and res.group(1) in wanted):
            continue
        if scope is not None and f'scope="{scope}"' not in line:
            continue
        out[verb.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return out
