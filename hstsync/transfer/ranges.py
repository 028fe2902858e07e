"""Segmented transfers, the deciding half: which byte ranges remain, how to split them,
and the ``FILE.part.segments`` record that makes every segment resumable on its own.

Ranges are half-open ``(start, end)`` byte offsets. Everything here is plain functions
over tuples, except the few file operations at the bottom (reading and atomically
writing the record), which sit beside the pure parsing and rendering they wrap.

Why a sidecar file and not the store: the record must live and die with the ``.part``
it describes. It sits in the same directory, is written atomically (temporary file,
fsync, rename) after the part's bytes are fsynced, and is removed only once the part
is whole or gone. :mod:`hstsync.transfer.downloader` needs no database to resume, and a part
copied, moved or cleaned up by hand takes its record with it or leaves an orphan that
is plainly stale, never a database row that describes bytes no longer there.

The rule that keeps a crash from making a file look complete: **a part without a
record is a prefix** (bytes 0..size of the part are the file's first bytes, as a
single stream writes them). A segmented part is preallocated to its full size, so it
always has a record: the record is written before the part grows and removed only
after the part is complete (or deleted).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hstsync.files import atomic_write
from hstsync.transfer.partfile import part_path

Range = tuple[int, int]

#: the smallest piece a split creates while a file's pace is unknown (no segment has
#: been answered yet): below this, a request's first-byte latency may cost more than
#: the parallelism gains
MIN_PIECE = 1 << 20
#: the smallest piece a split ever creates, however fast the answers: every request
#: costs some CPU on both sides, whatever the latency
SMALLEST_PIECE = 256 << 10
SIDECAR_SUFFIX = ".segments"
_FORMAT = 1


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


# -- the record beside the part -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """What a ``.part.segments`` file says: the bytes of the part that are in place."""

    size: int
    done: tuple[Range, ...]
    #: the strong ETag or Last-Modified of the answers the bytes came from (If-Range)
    validator: str | None = None

    @property
    def held(self) -> int:
        return covered(self.done)

    def remaining(self) -> list[Range]:
        return missing(self.size, self.done)


def render_record(record: SegmentRecord) -> str:
    return json.dumps(
        {
            "format": _FORMAT,
            "size": record.size,
            "validator": record.validator,
            "done": [list(r) for r in merge(record.done)],
        },
        separators=(",", ":"),
    )


def parse_record(text: str | bytes) -> SegmentRecord | None:
    """The record, or None for anything that is not one we wrote (then the part is
    not trusted: it is fetched again from zero)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return None
    size, validator, done = doc.get("size"), doc.get("validator"), doc.get("done")
    if not isinstance(size, int) or not _count(size) or not isinstance(done, list):
        return None
    if validator is not None and not isinstance(validator, str):
        return None
    ranges: list[Range] = []
    for item in done:
        if not (isinstance(item, list) and len(item) == 2 and all(_count(x) for x in item)):
            return None
        start, end = item
        if not start < end <= size:
            return None
        ranges.append((start, end))
    return SegmentRecord(size, tuple(merge(ranges)), validator)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sidecar_path(part: Path) -> Path:
    return part.with_name(part.name + SIDECAR_SUFFIX)


def read_record(part: Path) -> SegmentRecord | None:
    """The record beside ``part``, None when there is none or it is unreadable."""
    try:
        return parse_record(sidecar_path(part).read_bytes())
    except OSError:
        return None


def has_record(part: Path) -> bool:
    # asked of every file, most of which have none: no Path built for the answer
    return os.path.exists(os.fspath(part) + SIDECAR_SUFFIX)


def write_record(part: Path, record: SegmentRecord) -> None:
    """Replace the record atomically and durably. The caller fsyncs the part first:
    the record must never claim bytes that a power cut could take back."""
    atomic_write(sidecar_path(part), render_record(record))


def remove_record(part: Path) -> None:
    """Remove the record, and the temporary files a kill during :func:`write_record`
    leaves beside it (``atomic_write``'s ``.NAME.<hex>.tmp``)."""
    path = sidecar_path(part)
    path.unlink(missing_ok=True)
    strays = path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
    for stray in (path.with_name(path.name + ".tmp"), *strays):
        with contextlib.suppress(OSError):
            stray.unlink(missing_ok=True)


def held_bytes(dest: Path) -> int:
    """Bytes of ``dest`` already fetched into its ``.part``: the record's count for a
    segmented part (preallocated to full size), the part's size otherwise."""
    part = part_path(dest)
    if has_record(part):
        record = read_record(part)
        return record.held if record is not None else 0
    try:
        return part.stat().st_size
    except OSError:
        return 0
