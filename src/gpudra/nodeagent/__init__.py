"""The node agent: what happens to the node's GPUs over time, under both node daemons.

"Where is GPU health handled?"  Here, for ``gpudra kubelet-plugin`` (DRA) and ``gpudra
device-plugin`` alike:

* ``faults.FaultTracker``: a GPU's faults now (XID, ECC, lost; damped recovery) and what
  they mean: device taints (DRA) and Unhealthy (device plugin).  Its reads are pure.
* ``watch.GpuWatch``: the health-event thread and the NVML probe that feed the tracker, and
  the only place that announces a change (to each daemon's one listener).
* ``liveness.Liveness``: the daemon's own health (``/healthz``, ``/readyz``): dead guarded
  threads (``gpudra.common.threads``), an API server or NVML that stopped answering.
* ``catalogue_source.CatalogueSource``: the node catalogue now (a plain read), which both
  daemons advertise from.
* ``locks``: one node daemon per plugin directory, one daemon per GPU.
* ``agent.node_agent``: the liveness, tracker and watch of a daemon, assembled one way.

What the daemons do with a change is theirs: the DRA daemon republishes taints, tells the
kubelet's health stream and sends Node Events (``gpudra.kubeletplugin``); the device plugin
refreshes ListAndWatch (``gpudra.deviceplugin``).  The rules themselves (which XID is fatal,
what a recovery action means) are the model's: ``gpudra.devices.faults`` and
``gpudra.nvml.health_events``.
"""
