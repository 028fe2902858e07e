"""Transfers of one file: from the first request to its final name, verified.

A file is written as ``FILE.part`` beside its final name and renamed only once it
holds every byte the server stated (the catalogue's size is a hint: a complete,
verified answer of another length wins and is noted in the :class:`Outcome`) and its
content passes :mod:`hstsync.transfer.verify` (FITS CHECKSUM/DATASUM), so a file under
its final name is always complete and sound. An HTML page is never written to a part;
a part of unknown origin (no control file) is never appended to; nothing is opened
through a symbolic link below the mirror root, nor anything but a regular file.

:class:`Downloader` walks one way: the file's directories, the file already in place
(nothing to do), its :class:`~hstsync.transfer.partfile.PartFile` opened and locked,
then attempts under the retry policy of :mod:`hstsync.transfer.retry`, each one
:class:`~hstsync.transfer.fetch.FileFetch` of the missing ranges (the part's own, or
the whole file as one range, or cut at the catalogue's size) followed by
:meth:`PartFile.commit`. A part that fails verification is discarded and fetched again
within the retries; ranges the server refuses (it ignores Range, the file changed, the
catalogue's size was wrong) make the attempt start again from zero in one request.

:meth:`Downloader.fetch` never raises for a failed transfer: failures are data in the
:class:`Outcome`, their texts written from status codes, errno names and byte counts
(:mod:`hstsync.transfer.http`), never copied from an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from tenacity import AsyncRetrying

from hstsync.config import DownloadConfig
from hstsync.errors import AuthRequiredError, RangesRefused, Refused, TransferError
from hstsync.model import ProductState
from hstsync.transfer.answer import LengthDiffers
from hstsync.transfer.bandwidth import Bandwidth
from hstsync.transfer.budget import ConnectionBudget
from hstsync.transfer.control import has_control, remove_control
from hstsync.transfer.disk import disk_failure, make_dirs, part_path, refuse_link, regular_size
from hstsync.transfer.fetch import FileFetch, Link
from hstsync.transfer.http import size_note
from hstsync.transfer.land import remember_made
from hstsync.transfer.outcome import OnProgress, Outcome, Transfer
from hstsync.transfer.partfile import Landed, PartFile, open_part
from hstsync.transfer.probe import Probe, probe
from hstsync.transfer.ranges import worth_segmenting
from hstsync.transfer.retry import Attempts, OnRetry, retrying, with_retries
from hstsync.transfer.verify import Unverifiable
from hstsync.transfer.work import Work

log = logging.getLogger(__name__)


class Downloader:
    """Fetches files into place, one :meth:`fetch` per file, on a shared session.

    ``on_progress(transfer, delta)`` follows the bytes held in the ``.part``: positive
    per chunk written, negative when held bytes are dropped. ``on_retry(transfer,
    attempts, error)`` is called before each wait between two attempts (the service
    records the attempt while the pass runs). ``trusted_hosts`` are the host patterns
    credential headers may go to (``[mast] trusted_hosts``); None: each transfer's own
    host. ``sleep`` is what waits between attempts (tests pass a recorder).
    ``bandwidth`` is the limit it shares with other downloaders of the process (by
    default one of its own, from ``cfg.bwlimit``).
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
        bandwidth: Bandwidth | None = None,
    ) -> None:
        self._cfg = cfg
        self._on_progress = on_progress
        self.budget = ConnectionBudget(cfg.connections, cfg.per_host)
        trusted = tuple(trusted_hosts) if trusted_hosts is not None else None
        shared = bandwidth if bandwidth is not None else Bandwidth(cfg.bwlimit)
        self._link = Link(session, cfg, self.budget, trusted, sleep, on_retry, shared)

    async def fetch(self, transfer: Transfer) -> Outcome:
        """Bring ``transfer.dest`` into place. Raises nothing but CancelledError."""
        attempts = Attempts(self._cfg.retries + 1)
        state, error = ProductState.FAILED, ""
        file = _File(transfer, attempts)
        try:
            present = self._prepare(transfer)
            if present is not None:
                return Outcome(ProductState.DONE, 0, 0, 0, None, present)
            part = await with_retries(
                lambda: self._open(file), lambda: self._policy(transfer, attempts)
            )
            try:
                if part.waited and (present := self._present(transfer)) is not None:
                    return Outcome(ProductState.DONE, 0, 0, 0, None, present)
                file.part = part
                landed = await with_retries(
                    lambda: self._attempt(file), lambda: self._policy(transfer, attempts)
                )
            finally:
                part.close()
        except AuthRequiredError as exc:
            state, error = ProductState.AUTH_REQUIRED, str(exc)
        except (TransferError, Refused) as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not take the daemon down with it
            log.error("%s: unexpected %s", transfer.label, type(exc).__name__, exc_info=True)
            error = f"unexpected error ({type(exc).__name__})"
        else:
            return file.outcome(landed)
        received = file.part.received if file.part is not None else 0
        if attempts.count:
            log.warning(
                "%s: %s after %d attempt(s): %s", transfer.label, state, attempts.count, error
            )
        else:  # refused before any request (a disk that cannot be written): no count
            log.warning("%s: %s: %s", transfer.label, state, error)
        return Outcome(state, received, file.resumed_from, attempts.count, error)

    async def probe(
        self, transfer: Transfer, *, etag: str | None = None, last_modified: str | None = None
    ) -> Probe:
        """Whether the file in place at ``transfer.dest`` is still the archive's
        (:func:`hstsync.transfer.probe.probe`), on this downloader's connections."""
        return await probe(self._link, transfer, etag=etag, last_modified=last_modified)

    def _prepare(self, transfer: Transfer) -> int | None:
        """The file's directories made; the size of a file in place that needs nothing."""
        try:
            # made here, on the loop: a new directory waits on a journal commit
            # (~0.7 ms), but a worker thread for it cost more, in GIL hand-offs
            remember_made(make_dirs(transfer.root, transfer.dest.parent))
            refuse_link(part_path(transfer.dest))
        except OSError as exc:
            raise disk_failure(exc, "creating", transfer.dest.parent) from None
        return self._present(transfer)

    def _present(self, transfer: Transfer) -> int | None:
        """The size of the file in place when nothing is to be fetched: it has the
        expected size (any, when unknown) and is not to be replaced."""
        try:
            present = regular_size(transfer.dest)
        except OSError as exc:
            raise disk_failure(exc, "reading", transfer.dest) from None
        if present is not None and transfer.old_to is None and transfer.size in (None, present):
            log.debug("%s: already present (%d bytes)", transfer.label, present)
            part = part_path(transfer.dest)
            if not os.path.lexists(part) and has_control(part):
                # a kill between the part's rename and its control file's removal
                remove_control(part, legacy=True)
            return present
        return None

    async def _open(self, file: _File) -> PartFile:
        """The file's part, opened and locked. Out of descriptors or memory is a failed
        attempt, retried after a wait like any; a link or a FIFO there is refused."""
        transfer = file.transfer
        try:
            return await open_part(
                transfer.dest, transfer.root, self._reporter(transfer), label=transfer.label
            )
        except OSError as exc:
            failure = disk_failure(exc, "opening", part_path(transfer.dest))
            if isinstance(failure, TransferError):
                file.attempts.count += 1  # the attempt it would have been
            raise failure from None

    def _policy(self, transfer: Transfer, attempts: Attempts) -> AsyncRetrying:
        return retrying(
            self._cfg,
            transfer,
            attempts,
            sleep=self._link.sleep,
            on_retry=self._link.on_retry,
        )

    async def _attempt(self, file: _File) -> Landed:
        """One attempt: the missing ranges, then the part verified and committed."""
        transfer, part = file.transfer, file.part
        assert part is not None
        file.attempts.count += 1
        work = file.plan(self._cfg.segment_min)
        try:
            await FileFetch(self._link, transfer, part, work, file.attempts, split=file.split).run()
        except RangesRefused as exc:
            if isinstance(exc, LengthDiffers) and work.guessed:
                # the catalogue was wrong: the whole file's answer states the length,
                # and it may be cut again once it has
                log.info(
                    "%s: the server states %d bytes, not %s",
                    transfer.label,
                    exc.total,
                    transfer.size,
                )
            else:
                log.info("%s: %s; fetching the whole file in one request", transfer.label, exc)
                file.split = False
            part.reset()
            file.guess = False
            work = file.plan(self._cfg.segment_min)
            await FileFetch(self._link, transfer, part, work, file.attempts, split=file.split).run()
        assert work.size is not None  # run() returns only with every byte held
        file.work = work
        # the server's length is not the catalogue's: only a file that can be checked
        # is taken (a cut answer would otherwise look whole)
        require = transfer.size is not None and work.size != transfer.size
        try:
            return await part.commit(work.size, old_to=transfer.old_to, require=require)
        except Unverifiable as exc:
            if not file.unverifiable:
                file.unverifiable = True  # once more: a cut answer is often passing
                raise
            raise Refused(
                f"the catalogue says {transfer.size:,} bytes, the server sent {work.size:,}, "
                f"and {exc}: not accepted; `hstsync retry` once the archive agrees"
            ) from None

    def _reporter(self, transfer: Transfer) -> Callable[[int], None]:
        on_progress = self._on_progress
        if on_progress is None:
            return lambda delta: None
        return lambda delta: on_progress(transfer, delta) if delta else None


class _File:
    """What one :meth:`Downloader.fetch` knows of its file between attempts."""

    def __init__(self, transfer: Transfer, attempts: Attempts) -> None:
        self.transfer = transfer
        self.attempts = attempts
        self.part: PartFile | None = None
        self.work: Work | None = None
        #: more connections may cut the file (no range was refused)
        self.split = True
        #: a fresh file may be cut at its catalogue size before any answer
        self.guess = True
        #: an answer of another length than the catalogue's could not be checked once
        self.unverifiable = False
        #: a plan was made (what the part held is logged once, at the first)
        self.planned = False

    def plan(self, segment_min: int) -> Work:
        """The ranges this attempt asks for: what the part lacks, or the whole file."""
        transfer, part = self.transfer, self.part
        assert part is not None
        held, first = part.held, not self.planned
        self.planned = True
        if held is not None and (held.done or held.size is not None):
            if first and held.done:
                of = f" of {held.size}" if held.size is not None else ""
                log.info("%s: resuming, %d%s bytes held", transfer.label, held.held, of)
            return Work(held.size, held.done, held.validator)
        if first and part.untrusted:
            log.info("%s: partial file of unknown origin; starting again", transfer.label)
        elif first:
            log.debug("%s: downloading (catalogue: %s bytes)", transfer.label, transfer.size)
        size = transfer.size
        if self.guess and self.split and size is not None and worth_segmenting(size, segment_min):
            return Work(size, guessed=True)
        return Work(None)

    @property
    def resumed_from(self) -> int:
        """Bytes an earlier run left in the part and this call kept."""
        return self.part.kept if self.part is not None else 0

    def outcome(self, landed: Landed) -> Outcome:
        transfer, part, work = self.transfer, self.part, self.work
        assert part is not None and work is not None
        note = size_note(transfer.size, landed.size)
        received = part.received
        details = [f"in {self.attempts.count} attempt(s)"]
        if self.resumed_from:
            details.append(f"resumed at {self.resumed_from:,} bytes held")
        if received != landed.size - self.resumed_from:
            details.append(f"{received:,} bytes received in all")  # a restart, a refetch
        if note:
            details.append(note)
        log.info("%s: done, %s bytes %s", transfer.label, f"{landed.size:,}", ", ".join(details))
        return Outcome(
            ProductState.DONE,
            received,
            self.resumed_from,
            self.attempts.count,
            None,
            landed.size,
            note,
            sha256=landed.sha256,
            etag=work.etag,
            last_modified=work.last_modified,
            replaced=landed.replaced,
        )
