"""Byte ranges, the deciding half of a transfer: which remain, how to split them among
connections so that they end together, and when a file is worth several at all.

Ranges are half-open ``(start, end)`` byte offsets. Everything here is plain functions
over tuples and numbers (no I/O), unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Range = tuple[int, int]

#: the smallest piece a split creates while a file's pace is unknown (no segment has
#: been answered yet): below this, a request's first-byte latency may cost more than
#: the parallelism gains
MIN_PIECE = 1 << 20
#: the smallest piece a split ever creates, however fast the answers: every request
#: costs some CPU on both sides, whatever the latency
SMALLEST_PIECE = 256 << 10


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-empty, non-overlapping ranges covering the same bytes."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(ranges: Iterable[Range]) -> int:
    """How many bytes the ranges cover (overlaps counted once)."""
    return sum(end - start for start, end in merge(ranges))


def missing(size: int, done: Iterable[Range]) -> list[Range]:
    """The ranges of a ``size``-byte file not covered by ``done``."""
    gaps: list[Range] = []
    position = 0
    for start, end in merge(done):
        start, end = max(start, 0), min(end, size)
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < size:
        gaps.append((position, size))
    return gaps


@dataclass(frozen=True, slots=True)
class Pace:
    """How a file's segments are being served: ``rate`` bytes/s on each connection,
    ``latency`` seconds from sending a request to its first byte."""

    rate: float
    latency: float

    @property
    def head(self) -> int:
        """Bytes a running connection carries while a new one waits for its first byte."""
        return int(self.rate * self.latency)

    @property
    def min_piece(self) -> int:
        """The smallest piece worth a request: one that takes at least as long to carry
        as its first byte takes to come (splitting a range of ``head + 2 * min_piece``
        then saves at least half a latency)."""
        return max(SMALLEST_PIECE, self.head)


def min_piece(pace: Pace | None) -> int:
    """The smallest piece a split creates: relative to the pace once one is known."""
    return MIN_PIECE if pace is None else pace.min_piece


def head_start(pace: Pace | None, streaming: bool) -> int:
    """What a range's running connection keeps beyond an equal piece when the range is
    cut for new connections: the bytes it carries while they wait for their first byte
    (none before its own first byte: then all wait alike)."""
    return pace.head if pace is not None and streaming else 0


def splittable(remaining: int, head: int) -> int:
    """The part of a range's ``remaining`` bytes that is cut into equal pieces, after
    the ``head`` its running connection keeps (see :func:`head_start`)."""
    return max(remaining - head, 0)


def apportion(lengths: Sequence[int], extra: int, min_piece: int = MIN_PIECE) -> list[int]:
    """How many more connections each running range gets, ``extra`` at most in all.

    Each in turn goes to the range whose pieces would otherwise stay the largest, so
    that a file's ranges end together (three connections on a fresh file cut it in
    thirds, where halving twice left a half and two quarters). A range is never cut
    into pieces under ``min_piece``: below it, a request's first-byte wait costs more
    than the parallelism gains.
    """
    given = [0] * len(lengths)
    for _ in range(extra):
        best: int | None = None
        for index, length in enumerate(lengths):
            if length // (given[index] + 2) < min_piece:
                continue
            if best is None or length * (given[best] + 1) > lengths[best] * (given[index] + 1):
                best = index
        if best is None:
            break
        given[best] += 1
    return given


def capacity(lengths: Iterable[int], min_piece: int = MIN_PIECE) -> int:
    """How many more connections ranges of these lengths could take (see apportion)."""
    return sum(max(length // min_piece - 1, 0) for length in lengths)


def cuts(position: int, end: int, pieces: int) -> list[int]:
    """The ``pieces - 1`` offsets that cut ``[position, end)`` into equal pieces."""
    return weighted_cuts(position, end, [1] * pieces)


def weighted_cuts(position: int, end: int, weights: Sequence[int]) -> list[int]:
    """The ``len(weights) - 1`` offsets that cut ``[position, end)`` into pieces in
    proportion to ``weights``."""
    total = sum(weights)
    offsets: list[int] = []
    running = 0
    for weight in weights[:-1]:
        running += weight
        offsets.append(position + (end - position) * running // total)
    return offsets


def largest_piece(
    lengths: Sequence[int], heads: Sequence[int], extra: int, min_piece: int = MIN_PIECE
) -> float:
    """The bytes the busiest connection still has to carry once ``extra`` more cut the
    ranges (:func:`apportion`): a range whose connection keeps ``head`` bytes and whose
    ``length`` other bytes are cut into ``g + 1`` pieces leaves ``head + length / (g + 1)``
    on its busiest connection. The file whose busiest connection carries the most ends
    last, so a spare connection goes there.
    """
    given = apportion(lengths, extra, min_piece)
    pieces = (h + n / (g + 1) for n, h, g in zip(lengths, heads, given, strict=True))
    return max(pieces, default=0.0)


def worth_segmenting(size: int, segment_min: int) -> bool:
    """Whether a file is large enough for several connections (``segment_min`` 0: never)."""
    return 0 < segment_min < size


def should_segment(size: int, segment_min: int, accept_ranges: str | None) -> bool:
    """Whether a file is worth several connections, on a server that takes ranges."""
    return worth_segmenting(size, segment_min) and (
        (accept_ranges or "").strip().lower() == "bytes"
    )
