"""Which mock profile a node daemon runs: its node's label, else the configured default.

The Helm chart runs one DaemonSet for every node, so a per-node profile cannot come from the
pod spec; it comes from a node label (``--profile-node-label``, e.g. ``gpudra.io/mock-profile``).
Pure: the caller reads the node's labels and passes them in.  A label naming an unknown
profile is not silently replaced by the default; opening the backend reports it with the list
of profiles, naming the label it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpudra.settings import KubeletPluginSettings


@dataclass(frozen=True, kw_only=True)
class ProfileChoice:
    """The mock profile (by name or file) and where the choice came from, for the log."""

    profile: str | None
    profile_file: Path | None
    source: str


def choose_profile(s: KubeletPluginSettings, node_labels: dict[str, str]) -> ProfileChoice:
    """The profile for this node: ``node_labels[s.profile_node_label]`` if set, else flags."""
    if s.backend != "mock":
        return ProfileChoice(profile=None, profile_file=None, source="NVML")
    label = s.profile_node_label
    if label and node_labels.get(label):
        value = node_labels[label]
        return ProfileChoice(
            profile=value, profile_file=None, source=f"profile {value!r} from node label {label}"
        )
    if s.profile_file is not None:
        return ProfileChoice(
            profile=None, profile_file=s.profile_file, source=f"profile file {s.profile_file}"
        )
    why = f"; node has no {label} label" if label else ""
    return ProfileChoice(
        profile=s.profile, profile_file=None, source=f"default profile {s.profile!r}{why}"
    )
