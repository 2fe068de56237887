"""gpudra: a Kubernetes Dynamic Resource Allocation driver for NVIDIA GPUs.

See docs/DESIGN.md for what runs where and how the packages are layered.
"""

__version__ = "0.1.0"
