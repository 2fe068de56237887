"""GPU backends behind one protocol: real NVML (``real``) and a realistic mock (``mock``).

Everything above this package runs identically on either; only ``real`` imports pynvml.
"""
