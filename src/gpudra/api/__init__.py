"""Typed views of the Kubernetes API objects gpudra reads (pure model, no client).

The client hands out plain JSON dicts (``kube/``); code above it should not spell
``(x.get("spec") or {}).get(...)`` chains.  Each module here describes one kind (Pod,
ResourceClaim, ResourceSlice, DeviceClass, Node) as ``TypedDict`` s (``total=False``: the API
omits empty fields) holding only the fields gpudra reads, and offers named accessors that
take the raw object (any ``Mapping``, typed or not) and return typed values with the API's
defaults for absent fields.  The shape of what gpudra reads lives here, once; writes (patch
bodies, events) are still built where they are sent.  Imports nothing from gpudra.
"""
