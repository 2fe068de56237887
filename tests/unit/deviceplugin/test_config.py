"""NVIDIA's device-plugin config layout: their documented files are accepted unchanged; what
gpudra cannot honour is refused with the key's path and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudra.deviceplugin.config import PluginConfigError, parse_config
from gpudra.deviceplugin.options import effective
from gpudra.settings import DevicePluginSettings

NVIDIA = Path(__file__).parents[2] / "data" / "nvidia-device-plugin"


def load(name: str):  # type: ignore[no-untyped-def]
    return parse_config((NVIDIA / name).read_text(), source=name)


def test_nvidias_time_slicing_example_is_accepted_as_it_is() -> None:
    c = load("time-slicing.yaml")
    assert c.time_slicing is not None
    (r,) = c.time_slicing.resources
    assert (r.name, r.replicas, r.devices, r.rename) == ("nvidia.com/gpu", 10, "all", None)
    assert not c.time_slicing.rename_by_default
    assert not c.time_slicing.fail_requests_greater_than_one
    assert load("time-slicing-renamed.yaml").time_slicing.rename_by_default  # type: ignore[union-attr]


def test_nvidias_flags_example_sets_what_the_settings_leave_unset() -> None:
    c = load("dp-example-config0.yaml")
    assert c.ignored() == ["flags.nvidiaDriverRoot", "flags.failOnInitError"]
    o = effective(DevicePluginSettings(node_name="n"), c)
    assert (o.mig_strategy, o.list_strategy, o.id_strategy, o.pass_device_specs) == (
        "none",
        ("envvar",),
        "uuid",
        False,
    )
    # a setting given to gpudra wins over the file
    s = DevicePluginSettings(node_name="n", mig_strategy="mixed", device_id_strategy="index")
    o = effective(s, c)
    assert (o.mig_strategy, o.id_strategy, o.list_strategy) == ("mixed", "index", ("envvar",))


def test_without_a_file_the_defaults_are_gpudras() -> None:
    o = effective(DevicePluginSettings(node_name="n"), None)
    assert (o.resource_name, o.mig_strategy, o.list_strategy, o.id_strategy) == (
        "nvidia.com/gpu",
        "none",
        ("envvar", "cdi-cri"),
        "uuid",
    )
    assert not o.pass_device_specs and o.time_slicing is None


BAD = [
    ("version: v2\n", "f.yaml: version: unsupported version 'v2'; this layout is version: v1"),
    ("flags: {}\n", "f.yaml: missing version (this layout is version: v1)"),
    ("- a\n", "f.yaml: expected a mapping with version: v1, got list"),
    ("version: v1\nflagz: {}\n", "f.yaml: flagz: unknown key"),
    (
        "version: v1\nflags:\n  migStrategy: bogus\n",
        "f.yaml: flags.migStrategy: Input should be 'none', 'single' or 'mixed'",
    ),
    (
        "version: v1\nflags:\n  plugin:\n    deviceListStrategy: [envvar, volume-mounts]\n",
        "f.yaml: flags.plugin.deviceListStrategy: deviceListStrategy 'volume-mounts' is not "
        "supported: use envvar or cdi-cri",
    ),
    (
        "version: v1\nsharing:\n  timeSlicing:\n    resources: []\n",
        "f.yaml: sharing.timeSlicing.resources: no resources specified",
    ),
    (
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n"
        "      replicas: 0\n",
        "f.yaml: sharing.timeSlicing.resources.0.replicas: replicas must be at least 1, got 0",
    ),
    (
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n",
        "f.yaml: sharing.timeSlicing.resources.0.replicas: Field required",
    ),
    (
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n"
        "      replicas: 2\n      devices: some\n",
        "devices set as 'some' but the only valid string input is 'all'",
    ),
    (
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n"
        "      replicas: 2\n      replicaz: 3\n",
        "f.yaml: sharing.timeSlicing.resources.0.replicaz: unknown key",
    ),
    (
        "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n"
        "      replicas: 2\n",
        "f.yaml: sharing.mps: MPS sharing is not supported by gpudra's device plugin",
    ),
    (
        "version: v1\nresources:\n  gpus:\n  - pattern: '*'\n    name: gpu\n",
        "f.yaml: resources: resource renaming patterns",
    ),
    ("version: v1\nsharing: [\n", "f.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("text", "says"), BAD, ids=[s[:40] for _, s in BAD])
def test_a_bad_file_is_refused_with_the_key_and_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(PluginConfigError) as e:
        parse_config(text, source="f.yaml")
    assert says in str(e.value)
