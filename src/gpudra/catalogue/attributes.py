"""The attribute names gpudra's slice devices carry under the driver's domain (pure).

One constant per name: the renderers (``render_gpu``, ``render_mig``) write them and every
reader (the controller's score, the allocator's inputs, tests and tools) reads them through
these, so a renamed attribute cannot leave a reader asking for the old name.  The names
follow the NVIDIA reference driver where it has one (users' claims port by changing the
driver name); the NVLink ones are gpudra's own (see ``render_gpu``).  The Kubernetes
standard attributes (``resource.kubernetes.io/...``) live in ``gpudra.resourceapi``.

The values of ``TYPE``: ``TYPE_GPU`` for a whole GPU (shared or not), ``TYPE_MIG`` for a MIG
device (an existing instance or a dynamic placement).
"""

from __future__ import annotations

# identity, on every device
TYPE = "type"
TYPE_GPU = "gpu"
TYPE_MIG = "mig"
UUID = "uuid"  # a MIG device: only once the instance exists (static MIG)

# a whole GPU
INDEX = "index"
MINOR = "minor"
BRAND = "brand"
CUDA_DRIVER_VERSION = "cudaDriverVersion"
MIG_CAPABLE = "migCapable"

# the GPU a device is on (a whole GPU's own, a MIG device's parent's)
PRODUCT_NAME = "productName"
ARCHITECTURE = "architecture"
CUDA_COMPUTE_CAPABILITY = "cudaComputeCapability"
DRIVER_VERSION = "driverVersion"
NUMA_NODE = "numaNode"

# a MIG device
PROFILE = "profile"
PARENT_UUID = "parentUUID"
PARENT_INDEX = "parentIndex"
PLACEMENT_START = "placementStart"
PLACEMENT_SIZE = "placementSize"

# NVLink topology of a whole GPU (render_gpu's docstring says what each encodes)
NVLINK_PEER_COUNT = "nvlinkPeerCount"
NVLINK_PEERS = "nvlinkPeers"
NVLINK_GBPS = "nvlinkGBps"
NVLINK_GROUP = "nvlinkGroup"
NVLINK_DOMAIN = "nvlinkDomain"
NVLINK_DOMAIN_LINKS = "nvlinkDomainLinks"
NVLINK_CLIQUE = "nvlinkClique"

# what the controller's score rebuilds a node's topology from (the allocator keys its
# memoized topologies on these values: same values, same topology)
TOPOLOGY = (
    INDEX,
    TYPE,
    NVLINK_PEERS,
    NVLINK_DOMAIN,
    NVLINK_DOMAIN_LINKS,
    NVLINK_GBPS,
    NVLINK_GROUP,
)
