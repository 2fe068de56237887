"""gpudra's test and demo infrastructure, a distribution of its own (``gpudra-testkit``).

What runs gpudra in tests, ``make demo`` and ``make bench`` lives here, not in the product:
`localcluster` (a real etcd/kube-apiserver/kcm/kube-scheduler/kwok control plane, a real
kubelet + containerd node, OCI image tarballs), `harness` (the kubelet stand-in, the chart
launcher, the node daemon as the chart runs it, waits) and `builders` (ResourceClaims, pods,
slices and classes as plain dicts).  The split is enforced: the gpudra wheel ships none of it
and ``gpudra`` never imports ``gpudra_testkit`` (.importlinter); the kit imports gpudra freely.
"""
