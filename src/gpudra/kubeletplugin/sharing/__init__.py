"""Sharing a GPU between containers or claims, on the node: what a claim asks, what it gets.

Three ways to share, each asked for differently:

* **TimeSlicing** - a claim's ``GpuConfig`` (``sharing.strategy: TimeSlicing``) sets the
  GPU's time-slice interval while the claim holds it;
* **MPS** - a claim's ``GpuConfig``/``MigDeviceConfig`` (``sharing.strategy: MPS``) gets one
  MPS control daemon for the claim, with the config's defaults and pinned-memory limits;
* **consumable shares** - a GPU published for several claims (``--shared-gpus``,
  KEP-5075): each claim holds a share (its ``shareID`` and consumed memory and
  multiprocessors), enforced, when MPS is enabled, by one daemon per GPU that every share
  claim on it uses, with its share as its clients' limits.

Which module decides what (the first three pure, the last two the side effects):

* ``claim_config`` - parses and checks gpudra's opaque config
  (``resource.gpudra.io/v1beta1``), picks the config that applies to each device, and says
  what it asks of the device (``device_sharing``: a time slice, or MPS);
* ``share_plan`` - what a claim holds of a shared GPU (``device_share``), that it holds one
  GPU only, and the GPU's shared MPS daemon plan with the claim's limits;
* ``mps_plan`` - the claim's one MPS daemon plan (its own or its GPU's shared one), and what
  its containers are told through CDI;
* ``effects`` - time slices set and restored, MPS daemons started, adopted, restarted and
  stopped, each recorded in the checkpoint first;
* ``mps`` - the IO edge that runs an MPS control daemon.

Claim resolution itself (``kubeletplugin.prepare``) calls the pure ones while it resolves a
claim; ``NodePlugin`` calls ``effects`` around the checkpoint.
"""
