"""Segmented transfers, the doing half: one file fetched as several Range requests at once.

:mod:`hstsync.transfer.ranges` decides (which ranges remain, where to split, the
``.part.segments`` record); this module runs the requests. :class:`SegmentedTransfer`
writes each segment at its offset in one preallocated part, cuts the running ranges
evenly among the spare connections that come to it together (one alone takes half of
the range with most left), retries a failed segment on its own from where it stopped,
and keeps the record current (:class:`_Checkpoints`) so that a crash costs at most
``CHECKPOINT_SECONDS`` of transfer. Every request holds a token of the
:class:`~hstsync.transfer.budget.ConnectionBudget`: further segments only take spare tokens.

A segment answered with anything but its own range, or from a file that changed, is
:class:`RangesRefused`: the caller gives the segmented part up for one whole-file
transfer. Which file to segment, the retry policy and finishing the part are
:mod:`hstsync.transfer.downloader`'s; this module imports nothing from it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import aiohttp
from tenacity import AsyncRetrying

from hstsync.config import DownloadConfig
from hstsync.errors import (
    AuthRequiredError,
    RangesRefused,
    Refused,
    TooSlow,
    TransferError,
)
from hstsync.transfer.budget import ConnectionBudget, Expected, host_of
from hstsync.transfer.http import (
    CHUNK_SIZE,
    body_start,
    get,
    html_instead,
    network_error,
    parse_content_range,
    speed_floor,
    validator_of,
)
from hstsync.transfer.partfile import disk_error, fsync, pwrite
from hstsync.transfer.ranges import (
    Range,
    SegmentRecord,
    apportion,
    capacity,
    cuts,
    merge,
    missing,
    share,
    write_record,
)

log = logging.getLogger(__name__)

#: how often a segmented transfer records its progress beside the part (and at each
#: segment's end): what a crash can cost is this much transfer time, never a segment
CHECKPOINT_SECONDS = 1.0


@dataclass(slots=True, eq=False)
class _Segment:
    """A range being fetched: bytes ``start..position`` are written, ``position..end``
    are still to come; ``end`` moves down when the range is split."""

    start: int
    position: int
    end: int


class Work:
    """The ranges of one segmented file: done, waiting for a connection, or running."""

    def __init__(self, size: int, done: Iterable[Range], validator: str | None) -> None:
        self.size = size
        self.validator = validator
        self._done = merge(done)
        self._waiting = [_Segment(a, a, b) for a, b in missing(size, self._done)]
        self._running: list[_Segment] = []
        self._promised = 0

    def promise(self) -> None:
        """A connection was taken for this file and will claim a range: count it."""
        self._promised += 1

    def claim(self, count: int = 1) -> list[_Segment]:
        """Ranges for ``count`` more connections: waiting ones first, then running
        ranges cut so that the file's ranges end together (:func:`apportion`). Fewer,
        or none, when no cut is worth a request."""
        self._promised = 0
        claimed: list[_Segment] = []
        while self._waiting and len(claimed) < count:
            claimed.append(self._waiting.pop(0))
        self._running.extend(claimed)
        running = list(self._running)
        given = apportion([s.end - s.position for s in running], count - len(claimed))
        for victim, extra in zip(running, given, strict=True):
            if not extra:
                continue
            points = [*cuts(victim.position, victim.end, extra + 1), victim.end]
            pieces = [_Segment(a, a, b) for a, b in itertools.pairwise(points)]
            victim.end = points[0]
            self._running.extend(pieces)
            claimed.extend(pieces)
        return claimed

    def finish(self, segment: _Segment) -> None:
        self._running.remove(segment)
        self._done = merge([*self._done, (segment.start, segment.end)])

    def drop(self, segment: _Segment) -> None:
        """A segment that failed: its bytes so far count, the rest waits again."""
        if segment in self._running:
            self._running.remove(segment)
        self._done = merge([*self._done, (segment.start, segment.position)])
        if segment.position < segment.end:
            self._waiting.append(_Segment(segment.position, segment.position, segment.end))

    def snapshot(self) -> list[Range]:
        return merge([*self._done, *((s.start, s.position) for s in self._running)])

    def held(self) -> int:
        return sum(end - start for start, end in self.snapshot())

    def remaining(self) -> int:
        return sum(s.end - s.position for s in (*self._waiting, *self._running))

    def share(self) -> float | None:
        """Bytes per connection left, if another connection could take a range."""
        room = len(self._waiting) + capacity(s.end - s.position for s in self._running)
        if room <= self._promised:
            return None
        return share(self.remaining(), len(self._running) + self._promised)

    def record(self) -> SegmentRecord:
        return SegmentRecord(self.size, tuple(self.snapshot()), self.validator)


class _Checkpoints:
    """Writes a segmented part's record: every CHECKPOINT_SECONDS while bytes arrive,
    soon after each segment ends, and once more when the transfer stops.

    The part is fsynced before each record that names its bytes. Writes run in a
    worker thread under a lock; :meth:`close` waits for one in progress and stops all
    later ones, so no record can reappear after the part is finished or removed.
    """

    def __init__(self, part: Path, work: Work) -> None:
        self._part = part
        self._work = work
        self._lock = threading.Lock()
        self._closed = False
        self._written: tuple[Range, ...] | None = None
        self._wanted = asyncio.Event()
        self._last = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._last >= CHECKPOINT_SECONDS:
            self._wanted.set()

    def wanted(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self._last = time.monotonic()
            record = self._work.record()
            try:
                await asyncio.to_thread(self._write, record)
            except OSError as exc:
                # the transfer can still finish; only what a crash would keep is less
                log.warning("cannot record segments of %s: %s", self._part, exc.strerror)

    def save_now(self) -> None:
        try:
            self._write(self._work.record())
        except OSError as exc:
            log.warning("cannot record segments of %s: %s", self._part, exc.strerror)

    def _write(self, record: SegmentRecord) -> None:
        with self._lock:
            if self._closed or record.done == self._written:
                return
            fsync(self._part)  # the bytes first, then the record that names them
            write_record(self._part, record)
            self._written = record.done

    def close(self) -> None:
        with self._lock:
            self._closed = True


class SegmentedTransfer:
    """One file's ranges fetched at once into its preallocated part, until none remain.

    The :class:`~hstsync.transfer.downloader.Downloader` owns the file and hands this what a
    segmented transfer needs of it: ``retrying()`` makes the retry policy's object for
    one segment, ``received(n)`` counts ``n`` body bytes written. :meth:`run` ends with
    the part holding every byte (finishing it is the caller's) or raises the failure
    that decides, the part's record saved for the next attempt; a
    :class:`RangesRefused` leaves the part for the caller to remove.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: DownloadConfig,
        budget: ConnectionBudget,
        *,
        url: str,
        headers: Mapping[str, str],
        size: int,
        part: Path,
        work: Work,
        retrying: Callable[[], AsyncRetrying],
        received: Callable[[int], None],
        filename: str = "",
        public: bool = False,
        trusted: Sequence[str] | None = None,
    ) -> None:
        self._session = session
        self._cfg = cfg
        self.budget = budget
        self._url = url
        self._headers = headers
        self._size = size
        self._part = part
        self._work = work
        self._retrying = retrying
        self._received = received
        self._filename = filename
        self._public = public
        self._trusted = trusted
        self._keeper = _Checkpoints(part, work)

    async def run(
        self, first: aiohttp.ClientResponse | None = None, expected: Expected | None = None
    ) -> None:
        """Fetch every remaining range; ``first`` (an open whole-file answer) streams
        the first segment. This call's own segments run on the connection its caller
        holds; extra ones on spare tokens (see :meth:`_recruit`), ``expected`` closed
        once this transfer is a candidate for them."""
        host = host_of(self._url)
        work, keeper = self._work, self._keeper
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    background = [
                        group.create_task(keeper.run()),
                        group.create_task(self._recruit(group, host, expected)),
                    ]
                    segment = _one(work.claim())
                    while segment is not None:
                        await self._segment(segment, first)
                        first = None
                        segment = _one(work.claim())
                    for task in background:
                        task.cancel()
            except BaseExceptionGroup as errors:
                raise _most_telling(errors) from None
        except RangesRefused:
            keeper.close()
            raise
        except BaseException:
            keeper.save_now()  # what every segment holds, for the next attempt or run
            keeper.close()
            raise
        keeper.close()
        if work.remaining():  # every segment ended well, so this is a bug
            raise TransferError(f"segments left {work.remaining()} bytes unfetched")

    async def _recruit(
        self, group: asyncio.TaskGroup, host: str, expected: Expected | None
    ) -> None:
        """Put spare connections to work on this file while it is their best use."""
        work = self._work
        with self.budget.candidate(host, work.share) as me:
            if expected is not None:
                expected.close()
            while True:
                # every spare token this file is the best use of, then the ranges for
                # all of them at once, so that they are cut evenly
                taken = 0
                while self.budget.try_take(host, me):
                    work.promise()
                    taken += 1
                if taken:
                    segments = work.claim(taken)
                    for _ in range(taken - len(segments)):
                        self.budget.give_back(host)
                    for segment in segments:
                        task = group.create_task(self._segment(segment))
                        # a callback, not a finally: a task cancelled before it starts
                        # never runs its finally, and the token must come back regardless
                        task.add_done_callback(lambda _: self.budget.give_back(host))
                    self.budget.poke()  # another file may use what is left
                await self.budget.changed()

    async def _segment(
        self, segment: _Segment, first: aiohttp.ClientResponse | None = None
    ) -> None:
        """One segment to its end, retried on its own from where it stopped."""
        work = self._work

        async def once() -> None:
            nonlocal first
            if first is not None:
                resp, first = first, None
                try:
                    await self._stream(resp, segment)
                finally:
                    resp.release()  # its connection is done, whoever opened it
                return
            headers = {
                **self._headers,
                "Accept-Encoding": "identity",
                "Range": f"bytes={segment.position}-{segment.end - 1}",
            }
            if work.validator:
                headers["If-Range"] = work.validator
            try:
                async with get(self._session, self._url, headers, self._trusted) as resp:
                    _check_segment(resp, segment, work, self._filename, public=self._public)
                    await self._stream(resp, segment)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                raise TransferError(network_error(exc, self._url, self._cfg)) from None

        try:
            await self._retrying()(once)
        except BaseException:
            work.drop(segment)
            raise
        work.finish(segment)
        self._keeper.wanted()

    async def _stream(self, resp: aiohttp.ClientResponse, segment: _Segment) -> None:
        """Write a body at its segment's offsets until the segment's (moving) end."""
        part = self._part
        try:
            fd = os.open(part, os.O_WRONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise Refused(disk_error(exc, "writing", part)) from None
        try:
            try:
                async with speed_floor(self._cfg) as count:
                    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                        # the end moves down when another connection takes the second half
                        n = min(len(chunk), segment.end - segment.position)
                        try:
                            pwrite(fd, memoryview(chunk)[:n], segment.position)
                        except OSError as exc:
                            raise Refused(disk_error(exc, "writing", part)) from None
                        segment.position += n
                        self._received(n)
                        count(n)
                        if segment.position >= segment.end:
                            break
                        self._keeper.tick()
            except TooSlow as exc:
                raise TooSlow(
                    f"{exc} at byte {segment.position} of segment {segment.start}-{segment.end - 1}"
                ) from None
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                reason = network_error(exc, self._url, self._cfg)
                raise TransferError(
                    f"{reason} at byte {segment.position} of segment "
                    f"{segment.start}-{segment.end - 1}"
                ) from None
        finally:
            os.close(fd)
        if segment.position < segment.end:
            raise TransferError(
                f"the body ended at byte {segment.position} of segment "
                f"{segment.start}-{segment.end - 1}"
            )


def _one(segments: list[_Segment]) -> _Segment | None:
    return segments[0] if segments else None


def _check_segment(
    resp: aiohttp.ClientResponse, segment: _Segment, work: Work, filename: str, *, public: bool
) -> None:
    """A segment's answer must be its own range, of the file the other segments came from
    (the same validator, the same length the server stated at first)."""
    start = body_start(resp.status, resp.headers, segment.position, work.size, public=public)
    if resp.status != HTTPStatus.PARTIAL_CONTENT or start != segment.position:
        raise RangesRefused(
            f"the server answered a request for bytes {segment.position}-{segment.end - 1} "
            f"with {resp.status}"
        )
    why = html_instead(resp.headers.get("Content-Type"), filename)
    if why is not None:
        raise TransferError(f"{why} (HTTP {resp.status})")
    content_range = parse_content_range(resp.headers.get("Content-Range"))
    total = content_range[2] if content_range is not None else None
    if total is not None and total != work.size:
        raise RangesRefused(
            f"the file's length changed on the server ({work.size} bytes, now {total})"
        )
    validator = validator_of(resp)
    if work.validator and validator and validator != work.validator:
        raise RangesRefused("the file changed on the server during the transfer")
    work.validator = work.validator or validator


#: which of several segments' failures a transfer reports: the one that decides
_PRECEDENCE: tuple[type[BaseException], ...] = (
    AuthRequiredError,
    Refused,
    RangesRefused,
    TransferError,
)


def _most_telling(errors: BaseExceptionGroup) -> BaseException:
    flat: list[BaseException] = []
    pending: list[BaseException] = [errors]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            flat.append(exc)
    for kind in _PRECEDENCE:
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return flat[0]
