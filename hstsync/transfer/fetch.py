"""One attempt at a file: its missing ranges, over as many connections as the budget spares.

:class:`FileFetch` runs a file's :class:`~hstsync.transfer.work.Work` into its
:class:`~hstsync.transfer.partfile.PartFile`. It is one path for every file: a fresh
file of unknown length is one range, asked for with a plain GET; a part left by an
earlier run is its missing ranges, asked for with ``Range`` and ``If-Range``; a large
file's ranges are cut among the spare connections of the
:class:`~hstsync.transfer.budget.ConnectionBudget` as soon as its length is known and
the server takes ranges (a fresh file whose catalogue size is above ``segment_min`` is
cut at that size before any answer; the first answers confirm it). Each range is
retried on its own from where it stopped, spending from the file's one budget of
attempts; a lane gives its connection back while it waits to retry. Progress is
checkpointed (:data:`CHECKPOINT_SECONDS`) so that a crash costs at most that much
transfer.

Every answer is judged before a byte of it is written
(:func:`~hstsync.transfer.answer.judge`) and its body written into the range by
:func:`~hstsync.transfer.body.receive`. A whole-file answer to the one range of a file
starts it again from zero in place (a server that ignores Range, a file that changed);
with several ranges under way, an answer that is not its range raises
:class:`~hstsync.errors.RangesRefused` (or ``LengthDiffers``): the caller empties the
part and fetches the whole file in one plain request. Finishing the part is the
caller's (:meth:`PartFile.commit`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from tenacity import AsyncRetrying

from hstsync.config import DownloadConfig
from hstsync.errors import AuthRequiredError, RangesRefused, Refused, TransferError
from hstsync.transfer.answer import asked, judge
from hstsync.transfer.bandwidth import Bandwidth
from hstsync.transfer.body import receive
from hstsync.transfer.budget import ConnectionBudget, Expected, Seat, host_of
from hstsync.transfer.control import Control
from hstsync.transfer.http import (
    get,
    network_error,
)
from hstsync.transfer.outcome import Transfer
from hstsync.transfer.partfile import PartFile
from hstsync.transfer.ranges import worth_segmenting
from hstsync.transfer.retry import Attempts, OnRetry, retrying, with_retries
from hstsync.transfer.work import Segment, Work

log = logging.getLogger(__name__)

#: how often a transfer records its progress beside the part (and at each range's end):
#: what a crash can cost is this much transfer time
CHECKPOINT_SECONDS = 1.0
#: a whole-file answer of at most this many stated bytes is received in memory
SMALL_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Link:
    """What every transfer of a process shares: the session, the settings, the connection
    budget, where credentials may go (None: each transfer's own host), how to wait
    between attempts and whom to tell before."""

    session: aiohttp.ClientSession
    cfg: DownloadConfig
    budget: ConnectionBudget
    trusted: Sequence[str] | None
    sleep: Callable[[float], Awaitable[None]]
    on_retry: OnRetry | None
    #: the bytes/s all transfers share (``[download] bwlimit``)
    bandwidth: Bandwidth


class FileFetch:
    """One attempt at ``work``'s ranges into ``part``: the caller's connection carries one
    range after another while :meth:`_recruit` puts spare connections on the others.

    :meth:`run` returns once every byte is held (the file's length then known) or
    raises the failure that decides, its progress checkpointed for the next attempt.
    """

    def __init__(
        self,
        link: Link,
        transfer: Transfer,
        part: PartFile,
        work: Work,
        attempts: Attempts,
        *,
        split: bool = True,
    ) -> None:
        self._link = link
        self._transfer = transfer
        self._part = part
        self._work = work
        self._attempts = attempts
        self._split = split
        self._host = host_of(transfer.url)
        #: a fresh file's first answer writes the part's control file; the others wait
        self._begun: asyncio.Future[None] | None = None if part.held is None else _done()
        self._splittable = asyncio.Event()
        self._expected: Expected | None = None
        self._checkpoint_wanted = asyncio.Event()
        self._last_checkpoint = time.monotonic()

    async def run(self) -> None:
        work = self._work
        self._expected = expected = self._expect()
        try:
            async with asyncio.TaskGroup() as group:
                background = [
                    group.create_task(self._keep()),
                    group.create_task(self._recruit(group, expected)),
                ]
                seat = Seat(self._link.budget, self._host, held=False)
                await seat.take()
                try:
                    segment = _one(work.claim())
                    if segment is not None and self._may_split():
                        # the spare connections cut it before its first request goes
                        # out, so that what is asked for is already a piece: a longer
                        # request cut later costs what the server sends on meanwhile
                        await asyncio.sleep(0)
                    while segment is not None:
                        await self._lane(segment, seat)
                        segment = _one(work.claim())
                finally:
                    seat.release()
                for task in background:
                    task.cancel()
        except BaseExceptionGroup as errors:
            self._stopped(_most_telling(errors))
        except BaseException as exc:
            self._stopped(exc)
        finally:
            if expected is not None:
                expected.close()
        if not work.complete():  # every range ended well, so this is a bug
            raise TransferError(f"the ranges left {work.size} bytes incomplete")

    def _stopped(self, exc: BaseException) -> None:
        """A failure or a cancel: what every range holds is recorded for the next
        attempt or run (not for a part about to be emptied, nor one nothing began in),
        and the failure raised."""
        begun = self._begun is not None and self._begun.done() and not self._begun.exception()
        if begun and not isinstance(exc, RangesRefused):
            self._part.checkpoint_now(self._work.record())
        raise exc

    def _expect(self) -> Expected | None:
        """A file that may be cut holds spare connections back until its answer says."""
        size = self._work.size
        if not self._split or size is None or not _cuttable(size, self._link):
            return None
        return self._link.budget.expect(self._host, size)

    # -- spare connections --------------------------------------------------------------

    def _may_split(self) -> bool:
        work = self._work
        return (
            self._split
            and work.ranges_taken
            and _cuttable(work.size, self._link)
            and not self._part.in_memory
        )

    async def _recruit(self, group: asyncio.TaskGroup, expected: Expected | None) -> None:
        """Put spare connections to work on this file while it is their best use."""
        if not self._may_split():
            await self._splittable.wait()
        budget, work, host = self._link.budget, self._work, self._host
        with budget.candidate(host, work.share, work.lanes) as me:
            if expected is not None:
                expected.close()
            while True:
                # this file's part of the spare tokens, then the ranges for all of them
                # at once, so that they are cut evenly
                taken, planned = budget.take_spares(host, me)
                if taken:
                    work.promise(taken)
                    segments = work.claim(taken, planned)
                    for _ in range(taken - len(segments)):
                        budget.give_back(host)
                    for segment in segments:
                        group.create_task(self._spare_lane(segment))
                    budget.poke()  # another file may use what is left
                await budget.changed()

    async def _spare_lane(self, segment: Segment) -> None:
        # the token came from take_spares; it goes back whatever happens to the lane
        seat = Seat(self._link.budget, self._host, held=True)
        try:
            await self._lane(segment, seat)
        finally:
            seat.release()

    # -- one range ----------------------------------------------------------------------

    async def _lane(self, segment: Segment, seat: Seat) -> None:
        """One range to its end on this lane's connection, retried on its own (the
        connection given back while the lane waits, and waited for after)."""
        work, link = self._work, self._link

        def policy() -> AsyncRetrying:
            return retrying(
                link.cfg,
                self._transfer,
                self._attempts,
                sleep=lambda seconds: seat.wait(link.sleep, seconds),
                on_retry=link.on_retry,
                segment=True,
            )

        try:
            await with_retries(lambda: self._request(segment), policy)
        except BaseException:
            work.drop(segment)
            raise
        work.finish(segment)
        self._checkpoint_wanted.set()

    async def _request(self, segment: Segment) -> None:
        """One request for what is left of ``segment``, its body written as it comes."""
        transfer, work = self._transfer, self._work
        headers = asked(transfer.headers, segment, work)
        ranged = "Range" in headers
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            async with get(self._link.session, transfer.url, headers, self._link.trusted) as resp:
                work.observe_latency(loop.time() - sent)
                if ranged and resp.status == HTTPStatus.OK and self._restartable():
                    # the whole file, from a server that ignores Range or whose file
                    # changed: this answer starts it again from zero (never appended)
                    # (the part keeps its bytes until the new ones begin: see PartFile.begin)
                    log.info("%s: the server sent the whole file", transfer.label)
                    work.restart(segment)
                    self._begun, ranged = None, False
                start = judge(
                    resp.status,
                    resp.headers,
                    segment,
                    work,
                    ranged=ranged,
                    filename=transfer.dest.name,
                    public=transfer.public,
                )
                if start is None:  # nothing left to send: the range is complete
                    segment.end = segment.position
                    return
                await self._begin(segment)
                self._answered()
                await self._receive(resp, segment)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransferError(network_error(exc, transfer.url, self._link.cfg)) from None

    async def _begin(self, segment: Segment) -> None:
        """The first answer of a fresh file: the part told its bytes start now (a small
        one held in memory; a large one's space claimed). Others wait for it."""
        if self._begun is not None:
            await self._begun
            return
        self._begun = asyncio.get_running_loop().create_future()
        work = self._work
        try:
            small = (
                segment.start == 0
                and work.size is not None
                and work.size <= SMALL_BODY
                and work.lanes() <= 1
            )
            await self._part.begin(Control(work.size, work.validator), in_memory=small)
            if not small and work.size is not None and _cuttable(work.size, self._link):
                await self._part.preallocate(work.size)
        except BaseException as exc:
            self._begun.set_exception(exc)
            self._begun.exception()  # retrieved: the lanes waiting on it raise their own
            self._begun = None
            raise
        self._begun.set_result(None)

    def _restartable(self) -> bool:
        """Whether a whole-file answer can replace this work in place: its one range is
        the only one (no other connection writes the part) and its size no guess."""
        return self._work.lanes() <= 1 and not self._work.guessed

    def _answered(self) -> None:
        """An answer said what the file is: more connections may now cut it, or it stays
        one stream and the spare connections it held back are for others."""
        if self._may_split():
            self._splittable.set()
        elif self._expected is not None:
            self._expected.close()

    async def _receive(self, resp: aiohttp.ClientResponse, segment: Segment) -> None:
        """The body into the part; a small one cut short spilled to disk for a resume."""
        part, work = self._part, self._work

        def due() -> None:
            if time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS:
                self._checkpoint_wanted.set()

        try:
            await receive(resp, segment, part, work, self._transfer, self._link, due)
        except BaseException as exc:
            if part.in_memory and not isinstance(exc, asyncio.CancelledError):
                part.spill(work.record())
            raise

    # -- checkpoints --------------------------------------------------------------------

    async def _keep(self) -> None:
        """Record the part's progress when asked (each second while bytes arrive, at
        each range's end)."""
        while True:
            await self._checkpoint_wanted.wait()
            self._checkpoint_wanted.clear()
            self._last_checkpoint = time.monotonic()
            await self._part.checkpoint(self._work.record())


def _cuttable(size: int | None, link: Link) -> bool:
    """Whether a file of ``size`` bytes (None: not known yet) is worth more connections."""
    return size is not None and worth_segmenting(size, link.cfg.segment_min)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _one(segments: list[Segment]) -> Segment | None:
    return segments[0] if segments else None


#: which of several ranges' failures a transfer reports: the one that decides
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
