"""What the device plugin advertises (pure): resources and their device IDs, from the catalogue.

The node catalogue (``gpudra.catalogue``, the DRA plugin's one) says what each device is;
this module only groups its devices into extended resources the way NVIDIA's device plugin
names them (``internal/rm`` of NVIDIA/k8s-device-plugin):

* ``none``: whole GPUs as ``<resource name>`` (``nvidia.com/gpu``).  A GPU in MIG mode is
  not advertised (CUDA cannot use it whole); the layout notes it.
* ``single``: the MIG devices **as** ``<resource name>``; every MIG device on the node must
  have one profile, MIG and non-MIG GPUs must not be mixed, and every MIG GPU needs at least
  one MIG device.  A node breaking a rule advertises nothing for it and says why
  (``Layout.problems``).  A node without MIG GPUs advertises its whole GPUs.
* ``mixed``: whole GPUs as ``<resource name>``, each MIG profile as
  ``<domain>/mig-<profile>`` (``+`` becomes ``.``: ``nvidia.com/mig-1g.10gb.me``).

Time-slicing (``sharing.timeSlicing`` of NVIDIA's config) then replaces each selected device
by ``replicas`` IDs ``<uuid>::<n>``, under the same name, ``rename``, or ``<name>.shared``
with ``renameByDefault``.  Device IDs are UUIDs (at most 63 characters, as the API allows);
what the container's ``NVIDIA_VISIBLE_DEVICES`` lists is chosen at Allocate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gpudra.catalogue.catalogue import CatalogueDevice, DeviceKind, GpuMode, NodeCatalogue
from gpudra.deviceplugin.config import ReplicaResource, TimeSlicing
from gpudra.settings.device_plugin import MigStrategy

REPLICA_SEPARATOR = "::"


@dataclass(frozen=True)
class PluginDevice:
    """One device ID the kubelet sees."""

    id: str  # a GPU or MIG UUID, or "<uuid>::<n>" for a time-slicing replica
    device: str  # the catalogue's name of the device behind it (gpu-3, gpu-1-mig-1g.10gb-0)
    uuid: str  # the GPU or MIG device's UUID
    gpu_index: int
    index: str  # NVIDIA's device index: "3" for a GPU, "1:0" for MIG device 0 of GPU 1
    numa_node: int | None
    device_nodes: tuple[str, ...]
    replica: int | None = None


@dataclass(frozen=True)
class AdvertisedResource:
    name: str
    devices: tuple[PluginDevice, ...]
    whole_gpus: bool  # each ID is one whole GPU: GetPreferredAllocation scores NVLink sets
    shared: bool = False  # time-sliced replicas (failRequestsGreaterThanOne applies)

    def device(self, device_id: str) -> PluginDevice | None:
        return next((d for d in self.devices if d.id == device_id), None)


@dataclass(frozen=True)
class Layout:
    resources: tuple[AdvertisedResource, ...]
    problems: tuple[str, ...] = ()  # why something the strategy needs is not advertised
    notes: tuple[str, ...] = field(default=(), compare=False)  # worth a log line

    def resource(self, name: str) -> AdvertisedResource | None:
        return next((r for r in self.resources if r.name == name), None)


def mig_resource_name(resource_name: str, profile: str) -> str:
    domain = resource_name.split("/", 1)[0]
    return f"{domain}/mig-{profile.replace('+', '.')}"


def _plugin_device(c: NodeCatalogue, d: CatalogueDevice, index: str) -> PluginDevice:
    gpu = c.inventory.gpus[d.gpu_index]
    return PluginDevice(
        id=d.uuid,
        device=d.name,
        uuid=d.uuid,
        gpu_index=d.gpu_index,
        index=index,
        numa_node=gpu.numa_node,
        device_nodes=d.device_nodes,
    )


def _whole(c: NodeCatalogue) -> list[PluginDevice]:
    return [
        _plugin_device(c, d, str(d.gpu_index))
        for g in c.gpus_in(GpuMode.WHOLE)
        for d in c.devices.values()
        if d.gpu_index == g.index and d.kind is DeviceKind.GPU
    ]


def _migs(c: NodeCatalogue) -> list[tuple[str, PluginDevice]]:
    """(profile, device) for every existing MIG device, GPU by GPU."""
    out = []
    for g in c.gpus_in(GpuMode.STATIC_MIG):
        mine = [
            d for d in c.devices.values() if d.gpu_index == g.index and d.kind is DeviceKind.MIG
        ]
        for n, d in enumerate(mine):
            assert d.mig is not None
            out.append((d.mig.profile, _plugin_device(c, d, f"{g.index}:{n}")))
    return out


def _by_strategy(
    c: NodeCatalogue, resource_name: str, strategy: MigStrategy
) -> tuple[list[AdvertisedResource], list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    mig_gpus = c.gpus_in(GpuMode.STATIC_MIG) + c.gpus_in(GpuMode.DYNAMIC_MIG)
    whole = _whole(c)
    migs = _migs(c)
    if strategy == "none":
        if mig_gpus:
            notes.append(
                f"GPU(s) {','.join(str(g.index) for g in mig_gpus)} are in MIG mode: "
                "migStrategy none advertises whole GPUs only, so they are not advertised "
                "(use single or mixed)"
            )
        return [AdvertisedResource(resource_name, tuple(whole), whole_gpus=True)], problems, notes
    if strategy == "single":
        if not mig_gpus:
            return (
                [AdvertisedResource(resource_name, tuple(whole), whole_gpus=True)],
                problems,
                notes,
            )
        profiles = sorted({p for p, _ in migs})
        empty = [g.index for g in mig_gpus if not any(d.gpu_index == g.index for _, d in migs)]
        if whole:
            problems.append(
                "migStrategy single: GPU(s) "
                f"{','.join(str(i) for i in sorted({d.gpu_index for d in whole}))} are not in "
                f"MIG mode but GPU(s) {','.join(str(g.index) for g in mig_gpus)} are; single "
                "needs every GPU of the node in MIG mode (use mixed)"
            )
        if len(profiles) > 1:
            problems.append(
                "migStrategy single: the MIG devices have different profiles "
                f"({', '.join(profiles)}); single needs one profile on the whole node (use mixed)"
            )
        if empty:
            problems.append(
                f"migStrategy single: MIG GPU(s) {','.join(map(str, empty))} have no MIG devices"
            )
        if problems:
            return [AdvertisedResource(resource_name, (), whole_gpus=False)], problems, notes
        return (
            [AdvertisedResource(resource_name, tuple(d for _, d in migs), whole_gpus=False)],
            [],
            notes,
        )
    # mixed
    out = [AdvertisedResource(resource_name, tuple(whole), whole_gpus=True)]
    for g in mig_gpus:
        if not any(d.gpu_index == g.index for _, d in migs):
            notes.append(f"migStrategy mixed: MIG GPU {g.index} has no MIG devices")
    for profile in sorted({p for p, _ in migs}):
        devs = tuple(d for p, d in migs if p == profile)
        out.append(
            AdvertisedResource(mig_resource_name(resource_name, profile), devs, whole_gpus=False)
        )
    return out, problems, notes


def _selected(r: ReplicaResource, devices: Sequence[PluginDevice]) -> list[PluginDevice]:
    if r.devices == "all":
        return list(devices)
    if isinstance(r.devices, int):
        return list(devices[: r.devices])
    refs = {str(x) for x in r.devices}
    return [d for d in devices if d.uuid in refs or d.index in refs]


def _replicas(d: PluginDevice, n: int) -> list[PluginDevice]:
    return [
        PluginDevice(
            id=f"{d.uuid}{REPLICA_SEPARATOR}{i}",
            device=d.device,
            uuid=d.uuid,
            gpu_index=d.gpu_index,
            index=d.index,
            numa_node=d.numa_node,
            device_nodes=d.device_nodes,
            replica=i,
        )
        for i in range(n)
    ]


def _time_sliced(
    resources: list[AdvertisedResource], ts: TimeSlicing, notes: list[str]
) -> list[AdvertisedResource]:
    out: dict[str, AdvertisedResource] = {r.name: r for r in resources}
    for spec in ts.resources:
        base = out.get(spec.name)
        if base is None:
            notes.append(
                f"sharing.timeSlicing: resource {spec.name} is not advertised on this node "
                f"(advertised: {', '.join(sorted(out)) or 'nothing'})"
            )
            continue
        chosen = _selected(spec, base.devices)
        if not chosen:
            notes.append(f"sharing.timeSlicing: {spec.name}: no device matches {spec.devices}")
            continue
        name = spec.rename or (f"{spec.name}.shared" if ts.rename_by_default else spec.name)
        ids = {d.id for d in chosen}
        kept = tuple(d for d in base.devices if d.id not in ids)
        shared = tuple(x for d in chosen for x in _replicas(d, spec.replicas))
        if name == spec.name:
            out[name] = AdvertisedResource(name, kept + shared, whole_gpus=False, shared=True)
        else:
            out[spec.name] = AdvertisedResource(spec.name, kept, whole_gpus=base.whole_gpus)
            prior = out.get(name)
            devices = (prior.devices if prior else ()) + shared
            out[name] = AdvertisedResource(name, devices, whole_gpus=False, shared=True)
    return list(out.values())


def layout(
    c: NodeCatalogue,
    *,
    resource_name: str,
    mig_strategy: MigStrategy,
    time_slicing: TimeSlicing | None = None,
) -> Layout:
    """The resources of this node's served GPUs under the strategy and sharing config."""
    resources, problems, notes = _by_strategy(c, resource_name, mig_strategy)
    if time_slicing is not None:
        resources = _time_sliced(resources, time_slicing, notes)
    return Layout(tuple(resources), tuple(problems), tuple(notes))
