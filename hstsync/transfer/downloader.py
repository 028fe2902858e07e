"""Transfers of one file: which way it is fetched, from the first attempt to its final name.

A file is written as ``FILE.part`` beside its final name and renamed only once it
holds every byte the server stated (the catalogue's size is a hint: a complete,
verified answer of another length wins and is noted in the :class:`Outcome`) and its
content passes :mod:`hstsync.transfer.verify` (FITS CHECKSUM/DATASUM), so a file under
its final name is always complete and sound. An HTML page is never written to a part;
a part of unknown origin (no saved validator) is never appended to; nothing is opened
through a symbolic link below the mirror root.
A part that fails verification is deleted and fetched again, within the retries.
An interrupted transfer resumes from the bytes on disk; a server that ignores Range
(or answers with the wrong range) makes the transfer start again from zero.

Owns :class:`Downloader`: each attempt, under the retry policy of
:mod:`hstsync.transfer.retry`, resumes a segmented part from its record or a plain
part from its validator, or starts again; the bytes come through the whole-file
:class:`~hstsync.transfer.stream.Stream` or, for a file larger than ``segment_min``
from a server that sends ``Accept-Ranges: bytes``, through
:class:`~hstsync.transfer.segmented.SegmentedTransfer` (a fresh file whose catalogue
size is above ``segment_min`` goes there from its first request, cut at that size;
the first answers tell a server that ignores Range or a wrong catalogue size);
:mod:`hstsync.transfer.finish` verifies the part and gives it its final name. Every
request holds a token of the :class:`~hstsync.transfer.budget.ConnectionBudget`: a
file's first connection waits its turn, further segments only take spare tokens, so
whole files fill the budget first and the largest remaining files get what is left.

:meth:`Downloader.fetch` never raises for a failed transfer: failures are data in
the :class:`Outcome`, their texts written from status codes, errno names and byte
counts (:mod:`hstsync.transfer.http`), never copied from an aiohttp exception.

The names tests and callers import from here (:class:`Transfer`, :class:`Outcome`,
``open_session``, ``body_start``, ``parse_content_range``, ``retry_after_seconds``,
``RETRY_AFTER_CAP``, ``part_path``) are re-exported from the modules that hold them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from tenacity import AsyncRetrying

from hstsync.config import DownloadConfig
from hstsync.errors import (
    AuthRequiredError,
    RangesRefused,
    Refused,
    TransferError,
)
from hstsync.model import ProductState
from hstsync.transfer.budget import ConnectionBudget, Expected, host_of
from hstsync.transfer.finish import discard, drop_meta, finish, made_dirs, part_size
from hstsync.transfer.http import (
    RETRY_AFTER_CAP,
    body_start,
    open_session,
    parse_content_range,
    retry_after_seconds,
    size_note,
)
from hstsync.transfer.outcome import OnProgress, Outcome, Progress, Transfer
from hstsync.transfer.partfile import (
    disk_error,
    make_dirs,
    part_path,
    preallocate,
    read_meta,
    refuse_link,
    regular_size,
)
from hstsync.transfer.ranges import has_record, read_record, worth_segmenting, write_record
from hstsync.transfer.retry import OnRetry, retrying
from hstsync.transfer.segmented import LengthDiffers, SegmentedTransfer
from hstsync.transfer.stream import Stream
from hstsync.transfer.work import Work

__all__ = [
    "RETRY_AFTER_CAP",
    "Downloader",
    "Outcome",
    "Transfer",
    "body_start",
    "open_session",
    "parse_content_range",
    "part_path",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=64)
def _origin_of(prefix: str) -> str:
    return host_of(prefix)


def _origin(url: str) -> str:
    """``host_of(url)``, parsed once per scheme and authority rather than per file: the
    origin depends on nothing after the authority."""
    authority = url.find("//")
    end = url.find("/", authority + 2) if authority >= 0 else -1
    for mark in "?#":
        at = url.find(mark, authority + 2 if authority >= 0 else 0)
        if at >= 0 and (end < 0 or at < end):
            end = at
    return _origin_of(url[:end] if end >= 0 else url)


class Downloader:
    """Fetches files into place, one :meth:`fetch` per file, on a shared session.

    ``on_progress(transfer, delta)`` follows the bytes held in the ``.part``: positive
    per chunk written, negative when a partial file is discarded to start again.
    ``on_retry(transfer, attempts, error)`` is called before each wait between two
    attempts (the service records the attempt while the pass runs).
    ``trusted_hosts`` are the host patterns credential headers may go to
    (``[mast] trusted_hosts``); None: each transfer's own host.
    ``sleep`` is what waits between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: DownloadConfig,
        *,
        on_progress: OnProgress | None = None,
        on_retry: OnRetry | None = None,
        trusted_hosts: Sequence[str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._cfg = cfg
        self._on_progress = on_progress
        self._on_retry = on_retry
        self._trusted = tuple(trusted_hosts) if trusted_hosts is not None else None
        self._sleep = sleep
        self.budget = ConnectionBudget(cfg.connections, cfg.per_host)
        self._stream = Stream(
            session,
            cfg,
            self.budget,
            report=self._report,
            to_segments=self._segmented,
            trusted=self._trusted,
        )

    async def fetch(self, transfer: Transfer) -> Outcome:
        """Bring ``transfer.dest`` into place. Raises nothing but CancelledError."""
        label = transfer.label
        part = part_path(transfer.dest)
        progress = Progress()
        state = ProductState.FAILED
        try:
            try:
                # made here, on the loop: a new directory waits on a journal commit
                # (~0.7 ms), but a worker thread for it cost more, in GIL hand-offs
                made_dirs(make_dirs(transfer.root, transfer.dest.parent))
                present = regular_size(transfer.dest)
                refuse_link(part)
            except OSError as exc:
                raise Refused(disk_error(exc, "creating", transfer.dest.parent)) from None
            if present is not None and transfer.size in (None, present):
                log.debug("%s: already present (%d bytes)", label, present)
                # a kill between the part's rename and its validator's removal (finish)
                # leaves the validator behind: nothing will resume from it now
                drop_meta(part)
                return Outcome(ProductState.DONE, 0, 0, 0, None, present)
            await self._attempts(transfer, part, progress)
        except AuthRequiredError as exc:
            state, error = ProductState.AUTH_REQUIRED, str(exc)
        except (TransferError, Refused) as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not take the daemon down with it
            log.error("%s: unexpected %s", label, type(exc).__name__, exc_info=True)
            error = f"unexpected error ({type(exc).__name__})"
        else:
            size = progress.total
            note = size_note(transfer.size, size) if size is not None else None
            log.info(
                "%s: done, %d bytes fetched in %d attempt(s)%s",
                label,
                progress.fetched,
                progress.attempts,
                f" ({note})" if note else "",
            )
            return Outcome(
                ProductState.DONE,
                progress.fetched,
                progress.resumed_from,
                progress.attempts,
                None,
                size,
                note,
            )
        if progress.attempts:
            log.warning("%s: %s after %d attempt(s): %s", label, state, progress.attempts, error)
        else:  # refused before any request (a disk that cannot be written): no count
            log.warning("%s: %s: %s", label, state, error)
        return Outcome(state, progress.fetched, progress.resumed_from, progress.attempts, error)

    async def _attempts(self, transfer: Transfer, part: Path, progress: Progress) -> None:
        """The attempts under the retry policy. The first runs outside it: building the
        policy costs more than a small file's whole transfer, and most first attempts
        succeed. A first failure is handed to the policy as its first attempt's, so
        the waits, the log lines and ``on_retry`` are the same as if it had run there."""
        try:
            await self._attempt(transfer, part, progress)
            return
        except TransferError as exc:
            failed: TransferError | None = exc

        async def attempt(transfer: Transfer, part: Path, progress: Progress) -> None:
            nonlocal failed
            if failed is not None:
                exc, failed = failed, None
                raise exc
            await self._attempt(transfer, part, progress)

        await self._retrying(transfer, progress)(attempt, transfer, part, progress)

    def _retrying(
        self, transfer: Transfer, progress: Progress, *, segment: bool = False
    ) -> AsyncRetrying:
        return retrying(
            self._cfg,
            transfer,
            progress,
            sleep=self._sleep,
            on_retry=self._on_retry,
            segment=segment,
        )

    async def _attempt(self, transfer: Transfer, part: Path, progress: Progress) -> None:
        """One attempt: the bytes, holding one connection of the budget (more for
        segments), then finishing the part, which needs no connection."""
        progress.attempts += 1
        async with self.budget.connection(_origin(transfer.url)):
            try:
                await self._attempt_on(transfer, part, progress)
            except RangesRefused as exc:
                # the segmented part is gone (see _segmented): one plain stream from zero
                log.info("%s: %s; fetching the whole file in one request", transfer.label, exc)
                restart = await self._stream.exchange(
                    transfer, part, progress, 0, 0, segments=False
                )
                if restart is not None:
                    raise TransferError(restart) from None
        # only a segmented part has a record (a plain one never; an untrusted one was
        # removed by _resumable); a small body in memory has no part yet
        segmented = progress.body is None and has_record(part)
        await finish(transfer, part, progress, self._report, segmented=segmented)

    async def _attempt_on(self, transfer: Transfer, part: Path, progress: Progress) -> None:
        """Resume from the bytes on disk (segments or a prefix), or start over once."""
        if has_record(part):
            work = self._resumable(transfer, part)
            if work is not None:
                if progress.attempts == 1:
                    progress.resumed_from = work.held()
                    log.info(
                        "%s: resuming segments, %d of %d bytes held",
                        transfer.label,
                        progress.resumed_from,
                        work.size,
                    )
                progress.total = work.size
                await self._segmented(transfer, part, progress, work)
                return
        held = part_size(part)
        if not held and self._splits_up_front(transfer, progress):
            assert transfer.size is not None
            progress.total = transfer.size
            work = Work(transfer.size, (), None)
            expected = self.budget.expect(host_of(transfer.url), transfer.size)
            try:
                await self._segmented(transfer, part, progress, work, fresh=True, expected=expected)
                return
            except LengthDiffers as exc:
                # the catalogue was wrong (the part is gone, see _segmented): the whole
                # file's answer states the length, and segments follow it as before
                log.info(
                    "%s: the server states %d bytes, not %d",
                    transfer.label,
                    exc.total,
                    transfer.size,
                )
                progress.total = None
            finally:
                expected.close()
        offset = held
        if held and not progress.answered:
            # a part left by an earlier run: resumed only if the answer it came from
            # can be named in If-Range; bytes of unknown origin are never appended to
            progress.validator = read_meta(part)
            if progress.validator is None:
                log.info("%s: partial file of unknown origin; starting again", transfer.label)
                offset = 0
        if progress.attempts == 1:
            if offset:
                log.info("%s: resuming at %d bytes", transfer.label, offset)
            else:
                log.debug("%s: downloading (catalogue: %s bytes)", transfer.label, transfer.size)
        restart = await self._stream.exchange(transfer, part, progress, offset, held)
        if restart is None:
            return
        log.info("%s: %s; starting again from zero", transfer.label, restart)
        restart = await self._stream.exchange(transfer, part, progress, 0, part_size(part))
        if restart is not None:
            raise TransferError(restart)

    def _splits_up_front(self, transfer: Transfer, progress: Progress) -> bool:
        """Whether a fresh file goes straight to segments, cut at its catalogue size
        before any answer (:mod:`hstsync.transfer.segmented`): a server that ignores
        Range or states another length is found out by the first answers, and the file
        is then fetched in one request (RangesRefused, see :meth:`_attempt`)."""
        return (
            transfer.size is not None
            and not progress.answered
            and worth_segmenting(transfer.size, self._cfg.segment_min)
        )

    def _resumable(self, transfer: Transfer, part: Path) -> Work | None:
        """The work left by a segmented part, or None (part and record removed) when
        the record cannot be trusted for this file."""
        record = read_record(part)
        # a segmented part is preallocated to the length the server stated
        if record is not None and part_size(part) == record.size:
            return Work(record.size, record.done, record.validator)
        log.info("%s: the segment record does not match the part; starting again", transfer.label)
        held = record.held if record is not None else 0
        discard(part)
        self._report(transfer, -held)
        return None

    async def _segmented(
        self,
        transfer: Transfer,
        part: Path,
        progress: Progress,
        work: Work,
        first: aiohttp.ClientResponse | None = None,
        held: int = 0,
        expected: Expected | None = None,
        *,
        fresh: bool = False,
    ) -> None:
        """Fetch ``work``'s ranges into ``part``, several at once.

        ``first`` is an open whole-file answer (a fresh part): it streams the first
        segment while spare connections split off the rest; ``expected`` is the file's
        place among the candidates for them, kept until the transfer registers its own.
        Without ``first`` the part and its record exist already (a resume). The
        segments themselves are
        :class:`~hstsync.transfer.segmented.SegmentedTransfer`'s; retries and counting stay here.
        ``work.size`` is the length the server stated, whatever the catalogue says.
        """
        if first is not None or fresh:
            # the record first: a part that may hold bytes out of order always has one
            try:
                await asyncio.to_thread(write_record, part, work.record())
                await asyncio.to_thread(preallocate, part, work.size)
                drop_meta(part)  # the record names the validator from now on
            except OSError as exc:
                raise Refused(disk_error(exc, "writing", part)) from None
            self._report(transfer, -held)
            log.debug("%s: %d bytes in segments", transfer.label, work.size)

        def received(n: int) -> None:
            progress.fetched += n
            self._report(transfer, n)

        segments = SegmentedTransfer(
            self._session,
            self._cfg,
            self.budget,
            url=transfer.url,
            headers=transfer.headers,
            size=work.size,
            part=part,
            work=work,
            retrying=lambda: self._retrying(transfer, progress, segment=True),
            received=received,
            filename=transfer.dest.name,
            public=transfer.public,
            trusted=self._trusted,
        )
        try:
            await segments.run(first, expected)
        except RangesRefused:
            self._report(transfer, -work.held())
            discard(part)
            raise

    def _report(self, transfer: Transfer, delta: int) -> None:
        if self._on_progress is not None and delta:
            self._on_progress(transfer, delta)
