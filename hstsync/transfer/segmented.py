"""Segmented transfers, the doing half: one file fetched as several Range requests at once.

:mod:`hstsync.transfer.ranges` decides (which ranges remain, where to split, the
``.part.segments`` record); this module runs the requests. :class:`SegmentedTransfer`
writes each segment at its offset in one preallocated part, cuts the running ranges
evenly among the spare connections that come to it together (its part of them, dealt
by the budget; a fresh file is cut this way before any answer, at its catalogue
size), measures the file's pace (first-byte latency, bytes/s per connection: the
smallest piece worth a request and the head start a running range keeps when a freed
connection takes its end), retries a failed segment on its own from where it stopped,
and keeps the record current (:class:`~hstsync.transfer.work.Checkpoints`) so that a
crash costs at most ``CHECKPOINT_SECONDS`` of transfer; the ranges themselves are
:class:`~hstsync.transfer.work.Work`'s. Every request holds a token of the
:class:`~hstsync.transfer.budget.ConnectionBudget`: further segments only take spare tokens.

A segment answered with anything but its own range, or from a file that changed, is
:class:`RangesRefused`: the caller gives the segmented part up for one whole-file
transfer. Which file to segment and finishing the part are
:mod:`hstsync.transfer.downloader`'s, the retry policy :mod:`hstsync.transfer.retry`'s
(handed in as ``retrying``); this module imports neither.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
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
    server_total,
    speed_floor,
    validator_of,
)
from hstsync.transfer.partfile import disk_error, pwrite
from hstsync.transfer.work import Checkpoints, Segment, Work


class LengthDiffers(RangesRefused):
    """A segment's answer states another length than the one the ranges were cut for:
    the file changed on the server, or (cut at the catalogue's size, before any answer)
    the catalogue was wrong."""

    def __init__(self, expected: int, total: int) -> None:
        super().__init__(f"the file's length changed on the server ({expected} bytes, now {total})")
        self.total = total


#: how long a connection must have been carrying bytes before its rate is believed
#: (seconds): a server's first chunk often comes in one burst
RATE_WINDOW = 0.05


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
        self._keeper = Checkpoints(part, work)

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
        with self.budget.candidate(host, work.share, work.lanes) as me:
            if expected is not None:
                expected.close()
            while True:
                # this file's part of the spare tokens, then the ranges for all of them
                # at once, so that they are cut evenly
                taken, planned = self.budget.take_spares(host, me)
                if taken:
                    work.promise(taken)
                    segments = work.claim(taken, planned)
                    for _ in range(taken - len(segments)):
                        self.budget.give_back(host)
                    for segment in segments:
                        task = group.create_task(self._segment(segment))
                        # a callback, not a finally: a task cancelled before it starts
                        # never runs its finally, and the token must come back regardless
                        task.add_done_callback(lambda _: self.budget.give_back(host))
                    self.budget.poke()  # another file may use what is left
                await self.budget.changed()

    async def _segment(self, segment: Segment, first: aiohttp.ClientResponse | None = None) -> None:
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
            loop = asyncio.get_running_loop()
            sent = loop.time()
            try:
                async with get(self._session, self._url, headers, self._trusted) as resp:
                    work.observe_latency(loop.time() - sent)
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

    async def _stream(self, resp: aiohttp.ClientResponse, segment: Segment) -> None:
        """Write a body at its segment's offsets until the segment's (moving) end."""
        part = self._part
        try:
            fd = os.open(part, os.O_WRONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise Refused(disk_error(exc, "writing", part)) from None
        loop = asyncio.get_running_loop()
        began: float | None = None  # when the first chunk came: the pace is timed after it
        carried = 0
        try:
            try:
                async with speed_floor(self._cfg) as count:
                    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                        now = loop.time()
                        if began is None:
                            began = now
                        else:
                            carried += len(chunk)
                            if now - began >= RATE_WINDOW:
                                self._work.observe_rate(carried / (now - began))
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


def _one(segments: list[Segment]) -> Segment | None:
    return segments[0] if segments else None


def _check_segment(
    resp: aiohttp.ClientResponse, segment: Segment, work: Work, filename: str, *, public: bool
) -> None:
    """A segment's answer must be its own range, of the file the other segments came from
    (the same validator, the same length the server stated at first)."""
    start = body_start(resp.status, resp.headers, segment.position, work.size, public=public)
    if resp.status in (HTTPStatus.PARTIAL_CONTENT, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE):
        # first: a range past the end of a shorter file is unsatisfiable, not refused
        total = server_total(resp.status, resp.headers, segment.position)
        if total is not None and total != work.size:
            raise LengthDiffers(work.size, total)
    if resp.status != HTTPStatus.PARTIAL_CONTENT or start != segment.position:
        raise RangesRefused(
            f"the server answered a request for bytes {segment.position}-{segment.end - 1} "
            f"with {resp.status}"
        )
    why = html_instead(resp.headers.get("Content-Type"), filename)
    if why is not None:
        raise TransferError(f"{why} (HTTP {resp.status})")
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
