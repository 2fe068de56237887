"""``gpudra device-plugin``: the kubelet's classic device-plugin API (v1beta1) for GPUs."""
