"""A faithful Python port of go-gpuallocator's best-effort policy, the baseline for gpudra's
GetPreferredAllocation answer.

Source: ``NVIDIA/go-gpuallocator@876e7b76:gpuallocator/besteffort_policy.go``
(``bestEffortPolicy.Allocate``, ``iterateGPUPartitions``, ``calculateGPUSetScore``,
``calculateGPUPartitionScore``); the NVIDIA device plugin calls it from ``alignedAlloc``.

The port keeps the upstream's order of enumeration and its tie-breaking (the first partition
and the first set found win), and with them its known flaws: ``size == 1`` always takes the
first available GPU, and with nothing required the answer can be a set that is partly padding
(5 available, 3 requested: two GPUs and an empty slot; NVIDIA/go-gpuallocator#80).  Padding is
``None`` here (``nil`` upstream); an answer that contains ``None`` is what the upstream would
hand the device plugin.

Pair scores come in as a table (``pair_table``), as the upstream reads them from the link
lists ``NewDevices`` built; building that table is not part of ``allocate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

Slot = int | None  # a GPU index, or None for a padding slot
Partition = tuple[tuple[Slot, ...], ...]
PairTable = Sequence[Sequence[int]]


def pair_table(pair_score: Callable[[int, int], int], gpu_count: int) -> list[list[int]]:
    """Every pair's score, indexed [a][b]; 0 on the diagonal (``calculateGPUPairScore``)."""
    return [[0 if a == b else pair_score(a, b) for b in range(gpu_count)] for a in range(gpu_count)]


def iterate_partitions(
    devices: Sequence[int], size: int, *, prune_padding: bool = True
) -> Iterator[Partition]:
    """The partitions ``iterateGPUPartitions`` walks, in its order.

    ``devices`` is padded with ``None`` up to a multiple of ``size``; each set is the first
    remaining slot plus a combination of ``size - 1`` of the rest, so no partition repeats.
    Upstream keeps only sets with no padding or all of it (``prune_padding``); without that
    pruning the count is the upper bound m! / ((k!)^(m/k) (m/k)!).  Slots are removed by
    position, which equals the upstream's removal by value under the pruning."""
    if size <= 0 or size > len(devices):
        return
    if size == 1:
        for d in devices:
            yield ((d,),)
        return
    slots: list[Slot] = list(devices)
    slots += [None] * (-len(slots) % size)
    padding = len(slots) - len(devices)

    def walk(rest: list[Slot], accum: tuple[tuple[Slot, ...], ...]) -> Iterator[Partition]:
        if len(rest) == size:
            yield (*accum, tuple(rest))
            return
        for picks in itertools.combinations(range(1, len(rest)), size - 1):
            chosen = (rest[0], *(rest[i] for i in picks))
            pad = chosen.count(None)
            if prune_padding and pad not in (0, padding):
                continue
            taken = {0, *picks}
            yield from walk([s for i, s in enumerate(rest) if i not in taken], (*accum, chosen))

    yield from walk(slots, ())


def set_score(table: PairTable, gpus: Sequence[Slot]) -> int:
    """``calculateGPUSetScore``: the sum over pairs; a pair with padding scores 0."""
    return sum(
        table[a][b] for a, b in itertools.combinations(gpus, 2) if a is not None and b is not None
    )


def allocate(
    table: PairTable, available: Sequence[int], required: Sequence[int], size: int
) -> tuple[Slot, ...]:
    """``bestEffortPolicy.Allocate``: the best-scoring set containing ``required`` from the
    best-scoring partition of ``available`` into sets of ``size``; () when there is none.
    May contain ``None`` (padding), as upstream does."""
    if size <= 0 or len(available) < size or len(required) > size:
        return ()
    need = list(required)
    best: Partition | None = None
    best_score = 0
    for candidate in iterate_partitions(available, size):
        if not any(None not in s and all(r in s for r in need) for s in candidate):
            continue
        score = sum(set_score(table, s) for s in candidate)
        if score > best_score or best is None:
            best, best_score = candidate, score
    if best is None:
        return ()
    sets = [s for s in best if all(r in s for r in need)]
    if not sets:
        return ()
    answer = sets[0]
    best_score = set_score(table, answer)
    for s in sets[1:]:
        score = set_score(table, s)
        if score > best_score:
            answer, best_score = s, score
    return answer
