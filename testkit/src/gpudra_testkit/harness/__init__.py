"""Stand-ins and launchers around a local cluster: the kubelet's side of the DRA gRPC
contract (`kubelet`), the chart rendered into processes (`chart`, `nodedaemon`), the examples
run on a real node (`examples`), service-account tokens, a hanging TCP proxy, waits, and the
API server's request counters."""
