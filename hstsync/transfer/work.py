"""The ranges of one file being fetched (:class:`Work`): held, waiting, running.

:class:`Work` is the bookkeeping of a transfer: which ranges of the file are held, which
wait for a connection and which are running (:class:`Segment`), and how the running ones
are cut for connections that come later (:func:`~hstsync.transfer.ranges.apportion`
decides, this applies). A whole file is a plan of one range. A file whose length no
answer has stated yet is one range open at its end (:data:`OPEN`), never cut, until
:meth:`Work.learn_size`. No I/O here: :mod:`hstsync.transfer.fetch` runs the requests and
:class:`~hstsync.transfer.partfile.PartFile` keeps the bytes and the control file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from hstsync.transfer.control import Control
from hstsync.transfer.ranges import (
    Pace,
    Range,
    apportion,
    capacity,
    head_start,
    largest_piece,
    merge,
    min_piece,
    missing,
    splittable,
    weighted_cuts,
)

#: the end of the one range of a file whose length is not known yet
OPEN = 1 << 62

#: the weight of a piece cut to wait for a connection, against 2 for one that starts
#: now: it starts later (when a whole file gives its token back, about a latency), so
#: it is smaller, and the connection that takes it then ends with the others
LATER_WEIGHT = 1

#: how much a new sample of a file's pace weighs against what was seen before
PACE_WEIGHT = 0.3


@dataclass(slots=True, eq=False)
class Segment:
    """A range being fetched: bytes ``start..position`` are written, ``position..end``
    are still to come; ``end`` moves down when the range is split (:data:`OPEN`: the
    file's end, not known yet)."""

    start: int
    position: int
    end: int

    @property
    def last(self) -> str:
        """The range's last byte as a ``Range`` header names it (empty: to the end)."""
        return "" if self.end == OPEN else str(self.end - 1)


class Work:
    """The ranges of one file: held, waiting for a connection, or running.

    ``size`` is the file's length as the server stated it (None: not yet). ``guessed``:
    the size is the catalogue's, used to cut a fresh file before any answer; the first
    answer confirms it or the work starts again (``LengthDiffers``). ``pace`` is how the
    ranges are being served (:class:`~hstsync.transfer.ranges.Pace`, from
    :meth:`observe_latency` and :meth:`observe_rate`; None until both are seen): it sets
    the smallest piece worth a request and how much of a running range its connection
    keeps when the range is cut for a new one, so that both end together.
    """

    def __init__(
        self,
        size: int | None,
        done: Iterable[Range] = (),
        validator: str | None = None,
        *,
        guessed: bool = False,
    ) -> None:
        self.size = size
        self.validator = validator
        self.guessed = guessed
        #: the answer's ETag and Last-Modified, for conditional requests later
        self.etag: str | None = None
        self.last_modified: str | None = None
        #: the server takes ranges (an answer said ``Accept-Ranges: bytes`` or sent a 206)
        self.ranges_taken = guessed
        self._done = merge(done)
        end = OPEN if size is None else size
        self._waiting = [Segment(a, a, b) for a, b in missing(end, self._done)]
        self._running: list[Segment] = []
        self._promised = 0
        self._latency: float | None = None
        self._rate: float | None = None
        self.pace: Pace | None = None

    def learn_size(self, size: int) -> None:
        """An answer stated the file's length (or a body without one ended there)."""
        self.size = size
        self.guessed = False
        for segment in (*self._waiting, *self._running):
            if segment.end == OPEN:
                segment.end = size

    def restart(self, segment: Segment) -> None:
        """The file from zero on ``segment``'s connection, its only one: nothing is held,
        nothing of the file is known (a whole-file answer is about to say)."""
        self.size = self.validator = self.etag = self.last_modified = None
        self.guessed = False
        self._done, self._waiting, self._running = [], [], [segment]
        segment.start = segment.position = 0
        segment.end = OPEN

    def observe_latency(self, seconds: float) -> None:
        """A request's first byte came ``seconds`` after it was sent."""
        self._latency = _blend(self._latency, seconds)
        self._repace()

    def observe_rate(self, rate: float) -> None:
        """A connection carried ``rate`` bytes/s once its first byte was in."""
        self._rate = _blend(self._rate, rate)
        self._repace()

    def _repace(self) -> None:
        if self._latency is not None and self._rate is not None:
            self.pace = Pace(self._rate, self._latency)

    def _cuttable(self, segment: Segment) -> int:
        """The bytes of a running range that new connections could share with it."""
        if segment.end == OPEN:
            return 0
        head = head_start(self.pace, segment.position > segment.start)
        return splittable(segment.end - segment.position, head)

    def promise(self, count: int = 1) -> None:
        """Connections were taken for this file and will claim ranges: count them."""
        self._promised += count

    def lanes(self) -> int:
        """Connections running a range of this file or promised to one."""
        return len(self._running) + self._promised

    def claim(self, count: int = 1, plan: int = 0) -> list[Segment]:
        """Ranges for ``count`` more connections: waiting ones first, then running
        ranges cut so that the file's ranges end together (:func:`apportion`). Fewer,
        or none, when no cut is worth a request. With ``plan`` above ``count`` (and
        the waiting ranges), the ranges are cut for ``plan`` connections and the pieces
        beyond ``count`` wait for connections to come."""
        self._promised = 0
        waiting = len(self._waiting)
        claimed: list[Segment] = []
        while self._waiting and len(claimed) < count:
            claimed.append(self._waiting.pop(0))
        self._running.extend(claimed)
        wanted = count - len(claimed)
        extra = max(wanted, plan - waiting)
        pieces = self._cut(extra, extra - wanted)
        self._waiting.extend(pieces[wanted:])
        for piece in pieces[wanted:]:
            self._running.remove(piece)
        return [*claimed, *pieces[:wanted]]

    def _cut(self, extra: int, later: int = 0) -> list[Segment]:
        """Cut the running ranges for ``extra`` more connections: the new pieces. The
        last ``later`` of them will wait for a connection: they are half the size of
        the others, which start sooner."""
        if extra <= 0:
            return []
        claimed: list[Segment] = []
        running = list(self._running)
        smallest = min_piece(self.pace)
        given = apportion([self._cuttable(s) for s in running], extra, smallest)
        made = 0
        for victim, more in zip(running, given, strict=True):
            if not more:
                continue
            # a range already streaming keeps what it carries while the new
            # connections wait for their first byte; the rest is cut evenly
            head = head_start(self.pace, victim.position > victim.start)
            weights = [LATER_WEIGHT if made + i >= extra - later else 2 for i in range(more)]
            made += more
            points = [*weighted_cuts(victim.position + head, victim.end, [2, *weights]), victim.end]
            pieces = [Segment(a, a, b) for a, b in itertools.pairwise(points)]
            victim.end = points[0]
            self._running.extend(pieces)
            claimed.extend(pieces)
        return claimed

    def finish(self, segment: Segment) -> None:
        self._running.remove(segment)
        self._done = merge([*self._done, (segment.start, segment.end)])

    def drop(self, segment: Segment) -> None:
        """A segment that failed: its bytes so far count, the rest waits again."""
        if segment in self._running:
            self._running.remove(segment)
        self._done = merge([*self._done, (segment.start, segment.position)])
        if segment.position < segment.end:
            self._waiting.append(Segment(segment.position, segment.position, segment.end))

    def snapshot(self) -> list[Range]:
        return merge([*self._done, *((s.start, s.position) for s in self._running)])

    def held(self) -> int:
        return sum(end - start for start, end in self.snapshot())

    def complete(self) -> bool:
        """Every byte of a file of known length is held."""
        return (
            self.size is not None
            and not self._waiting
            and not self._running
            and (self.held() == self.size)
        )

    def share(self, extra: int = 0) -> float | None:
        """The bytes this file's busiest connection would still carry with ``extra``
        more connections (beyond those promised), if one more than that could still take
        a range (:func:`~hstsync.transfer.ranges.largest_piece`). A waiting range takes a
        connection of its own before any running one is cut."""
        coming = self._promised + extra
        smallest = min_piece(self.pace)
        lengths = [self._cuttable(s) for s in self._running]
        heads = [s.end - s.position - n for s, n in zip(self._running, lengths, strict=True)]
        waiting = [s.end - s.position for s in self._waiting if s.end != OPEN]
        if len(waiting) + capacity(lengths, smallest) <= coming:
            return None
        served = min(coming, len(waiting))
        piece = largest_piece(
            [*lengths, *waiting[:served]], [*heads, *[0] * served], coming - served, smallest
        )
        # a range no connection carries yet ends last: after a running one, at best
        return piece + max(waiting[served:], default=0)

    def record(self) -> Control:
        """What the part holds, for its control file."""
        return Control(self.size, self.validator, tuple(self.snapshot()))


def _blend(before: float | None, sample: float) -> float:
    return sample if before is None else before + PACE_WEIGHT * (sample - before)
