"""Kubernetes value types (pure model, stdlib only): what the API's values mean, not who reads them.

``resource.Quantity`` (`quantity`: parsing, exact comparison and arithmetic), semantic versions
as the CEL ``semver`` library orders them (`semver`), core NodeSelector matching (`nodeselect`)
and the toleration rule shared by node and device taints (`tolerations`), each ported rule for
rule from upstream.  The allocator, the controller, the node daemon and the device plugin all
call these; nothing here decides for any of them.  No IO and no library beyond the standard one;
below it only the typed API views of `gpudra.api` and `gpudra.common`.
"""
