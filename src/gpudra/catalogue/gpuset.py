"""GPU-set settings (``--dynamic-mig-gpus``, ``--controller-managed-gpus``) as typed values.

``all``, ``none`` (or empty), ``4-7`` or ``0,2,5-6``.  Parsed once, when the settings are
read (a syntax error stops the daemon with the reason); resolved against the node's GPU
count when the catalogue is built (an index the node lacks is an error too).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudra.common.errors import GpudraError

_SYNTAX = "use all, none, or indices/ranges like 0,2,4-7"


class GpuSetError(GpudraError, ValueError):
    """A GPU set names a GPU the node does not have."""


@dataclass(frozen=True)
class GpuSet:
    """A set of GPU indices, or every GPU of the node."""

    every: bool = False
    indices: frozenset[int] = frozenset()
    text: str = "none"  # as the user wrote it, for messages

    @classmethod
    def parse(cls, spec: str | None) -> GpuSet:
        if not spec or spec.strip() == "none":
            return cls()
        spec = spec.strip()
        if spec == "all":
            return cls(every=True, text=spec)
        out: set[int] = set()
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            try:
                first, last = int(lo), int(hi or lo)
            except ValueError:
                raise ValueError(f"invalid GPU set {spec!r}: {_SYNTAX}") from None
            if first < 0 or last < first:
                raise ValueError(f"invalid GPU set {spec!r}: range {part.strip()!r} is empty")
            out.update(range(first, last + 1))
        return cls(indices=frozenset(out), text=spec)

    def resolve(self, count: int) -> frozenset[int]:
        """The indices on a node with ``count`` GPUs; GpuSetError for one it does not have."""
        if self.every:
            return frozenset(range(count))
        bad = sorted(i for i in self.indices if i >= count)
        if bad:
            last = f"0..{count - 1}" if count else "no GPUs"
            raise GpuSetError(f"GPU set {self.text!r} names GPU(s) {bad}; this node has {last}")
        return self.indices

    def __str__(self) -> str:
        return self.text
