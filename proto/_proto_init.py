"""Generated gRPC stubs for the kubelet contracts (``make proto``; never edit by hand).

Only the servicer modules of the components and the test harness import these, and only
through grpc, which those modules own.
"""
