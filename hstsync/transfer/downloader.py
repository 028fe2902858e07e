"""Transfers of one file: whole-file streams with Range resume, retries, finishing.

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

Owns :class:`Transfer`, :class:`Outcome` and :class:`Downloader`: which way a file is
fetched, the whole-file stream, the retry policy, and finishing a part (verify, fsync,
rename). The HTTP edge (session, GET, what an answer means, failure texts) is
:mod:`hstsync.transfer.http`; the ``.part`` file operations are :mod:`hstsync.transfer.partfile`.
A file larger than ``segment_min`` from a server that sends ``Accept-Ranges: bytes``
is fetched as several Range segments at once by :mod:`hstsync.transfer.segmented`, with
:mod:`hstsync.transfer.ranges` deciding which ranges remain. Every request holds a token of
the :class:`~hstsync.transfer.budget.ConnectionBudget`: a file's first connection waits its
turn, further segments only take spare tokens, so whole files fill the budget first
and the largest remaining files get what is left.

Retry policy — which failures, how many attempts, how long to wait, ``Retry-After``
— lives in :meth:`Downloader._retrying` and nowhere else. Only :class:`TransferError`
is retried (a 403 for public data is one); a refusal (401/403/404) or a disk that
cannot be written ends the transfer at once.

:meth:`Downloader.fetch` never raises for a failed transfer: failures are data in
the :class:`Outcome`, their texts written from status codes, errno names and byte
counts (:mod:`hstsync.transfer.http`), never copied from an aiohttp exception.

The names tests and callers import from here (``open_session``, ``body_start``,
``parse_content_range``, ``retry_after_seconds``, ``RETRY_AFTER_CAP``, ``part_path``)
are re-exported from the modules that now hold them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from hstsync.config import DownloadConfig
from hstsync.errors import (
    AuthRequiredError,
    CorruptFileError,
    RangesRefused,
    Refused,
    RetryLater,
    TooSlow,
    TransferError,
)
from hstsync.model import ProductState
from hstsync.transfer.budget import ConnectionBudget, Expected, host_of
from hstsync.transfer.http import (
    CHUNK_SIZE,
    CONNECT_TIMEOUT,
    MAX_REDIRECTS,
    RETRY_AFTER_CAP,
    body_start,
    get,
    html_instead,
    is_chunked,
    network_error,
    open_session,
    parse_content_range,
    retry_after_seconds,
    server_total,
    size_note,
    speed_floor,
    validator_of,
)
from hstsync.transfer.partfile import (
    check_dirs,
    disk_error,
    fsync,
    make_dirs,
    open_part,
    part_path,
    preallocate,
    read_meta,
    refuse_link,
    remove_meta,
    write_meta,
)
from hstsync.transfer.ranges import (
    has_record,
    read_record,
    remove_record,
    should_segment,
    worth_segmenting,
    write_record,
)
from hstsync.transfer.segmented import CHECKPOINT_SECONDS, SegmentedTransfer, Work
from hstsync.transfer.verify import verify_file

__all__ = [
    "CHECKPOINT_SECONDS",
    "CHUNK_SIZE",
    "CONNECT_TIMEOUT",
    "MAX_REDIRECTS",
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


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file to fetch. ``headers`` (e.g. Authorization) are sent, never logged.

    ``size`` is the catalogue's, a hint (None: unknown): the server's stated length
    wins. ``root`` is the mirror: no directory between it and ``dest`` may be a
    symbolic link. ``public``: a 403 is then a rate limiter, retried, not a refusal.
    """

    url: str
    dest: Path
    size: int | None
    label: str
    # repr=False: a Transfer in a log line or a traceback must not show the token
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    root: Path | None = None
    public: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a transfer ended.

    ``fetched`` counts body bytes received over the network by this call;
    ``resumed_from`` the bytes of an existing ``.part`` kept at the first attempt.
    ``size`` is the final file's length once done; ``size_note`` says how it differs
    from the catalogue's (``catalogue says 1,234 bytes, the server sent 1,200``).
    """

    state: ProductState
    fetched: int
    resumed_from: int
    attempts: int
    error: str | None
    #: the size the server sent when it won over the catalogue's (or the catalogue had none)
    size: int | None = None
    #: how the server's size differs from the catalogue's, for status
    size_note: str | None = None


@dataclass(slots=True)
class _Progress:
    """What one :meth:`Downloader.fetch` call has done so far."""

    attempts: int = 0
    fetched: int = 0
    resumed_from: int = 0
    #: a strong ETag or Last-Modified seen this call, sent back as If-Range
    validator: str | None = None
    #: whether an answer came this call (then ``validator`` is this call's own)
    answered: bool = False
    #: the file's length as the server stated it (None: not stated, e.g. chunked)
    total: int | None = None


class _Backoff:
    """Exponential backoff with jitter, raised to the server's Retry-After if it sent one."""

    def __init__(self, cfg: DownloadConfig) -> None:
        self._exponential = wait_exponential_jitter(
            multiplier=cfg.backoff, max=cfg.backoff_max, jitter=cfg.backoff
        )

    def __call__(self, state: RetryCallState) -> float:
        wait = self._exponential(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryLater) and exc.retry_after is not None:
            # a lower bound: the server's wish wins over a shorter backoff, and
            # backoff_max does not cut it short (RETRY_AFTER_CAP does).
            wait = max(wait, exc.retry_after)
        return wait


# -- the downloader ---------------------------------------------------------------------


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
        on_progress: Callable[[Transfer, int], None] | None = None,
        on_retry: Callable[[Transfer, int, str], None] | None = None,
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

    async def fetch(self, transfer: Transfer) -> Outcome:
        """Bring ``transfer.dest`` into place. Raises nothing but CancelledError."""
        label = transfer.label
        part = part_path(transfer.dest)
        progress = _Progress()
        state = ProductState.FAILED
        try:
            try:
                make_dirs(transfer.root, transfer.dest.parent)
                refuse_link(transfer.dest)
                refuse_link(part)
            except OSError as exc:
                raise Refused(disk_error(exc, "creating", transfer.dest.parent)) from None
            present = _size_of(transfer.dest)
            if present is not None and transfer.size in (None, present):
                log.debug("%s: already present (%d bytes)", label, present)
                return Outcome(ProductState.DONE, 0, 0, 0, None, present)
            await self._retrying(transfer, progress)(self._attempt, transfer, part, progress)
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
        log.warning("%s: %s after %d attempt(s): %s", label, state, progress.attempts, error)
        return Outcome(state, progress.fetched, progress.resumed_from, progress.attempts, error)

    def _retrying(
        self, transfer: Transfer, progress: _Progress, *, segment: bool = False
    ) -> AsyncRetrying:
        """The retry policy, all of it. A fresh object per transfer or segment.

        One budget of ``retries + 1`` attempts per file: a segment's retry (only that
        segment is fetched again) spends from the same count as a whole-file attempt,
        so a dead server costs a segmented file no more attempts than a plain one.
        """
        attempts = self._cfg.retries + 1

        def announce(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d failed)",
                transfer.label,
                exc,
                state.upcoming_sleep,
                progress.attempts,
                attempts,
            )
            if self._on_retry is not None:
                try:
                    self._on_retry(transfer, progress.attempts, str(exc))
                except Exception:  # a hook's bug must not end the transfer
                    log.error("%s: on_retry failed", transfer.label, exc_info=True)

        def spent(_: RetryCallState) -> bool:
            if progress.attempts >= attempts:
                return True
            if segment:  # counted when granted: segments failing together share the count
                progress.attempts += 1
            return False

        return AsyncRetrying(
            sleep=self._sleep,
            stop=spent,
            wait=_Backoff(self._cfg),
            retry=retry_if_exception_type(TransferError),
            before_sleep=announce,
            reraise=True,
        )

    async def _attempt(self, transfer: Transfer, part: Path, progress: _Progress) -> None:
        """One attempt: the bytes, holding one connection of the budget (more for
        segments), then finishing the part, which needs no connection."""
        progress.attempts += 1
        async with self.budget.connection(host_of(transfer.url)):
            try:
                await self._attempt_on(transfer, part, progress)
            except RangesRefused as exc:
                # the segmented part is gone (see _segmented): one plain stream from zero
                log.info("%s: %s; fetching the whole file in one request", transfer.label, exc)
                restart = await self._exchange(transfer, part, progress, 0, 0, segments=False)
                if restart is not None:
                    raise TransferError(restart) from None
        # only a segmented part has a record (a plain one never; an untrusted one was
        # removed by _resumable)
        await self._finish(transfer, part, progress, segmented=has_record(part))

    async def _attempt_on(self, transfer: Transfer, part: Path, progress: _Progress) -> None:
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
        held = _held(part)
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
        restart = await self._exchange(transfer, part, progress, offset, held)
        if restart is None:
            return
        log.info("%s: %s; starting again from zero", transfer.label, restart)
        restart = await self._exchange(transfer, part, progress, 0, _held(part))
        if restart is not None:
            raise TransferError(restart)

    def _resumable(self, transfer: Transfer, part: Path) -> Work | None:
        """The work left by a segmented part, or None (part and record removed) when
        the record cannot be trusted for this file."""
        record = read_record(part)
        # a segmented part is preallocated to the length the server stated
        if record is not None and _held(part) == record.size:
            return Work(record.size, record.done, record.validator)
        log.info("%s: the segment record does not match the part; starting again", transfer.label)
        held = record.held if record is not None else 0
        _remove(part)
        _remove_record(part)
        self._report(transfer, -held)
        return None

    async def _exchange(
        self,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        offset: int,
        held: int,
        *,
        segments: bool = True,
    ) -> str | None:
        """One request. None when the part holds every byte; else why to start from zero.

        A fresh whole-file answer from a server that takes ranges, for a file larger
        than ``segment_min``, becomes the first segment of a segmented transfer.
        """
        headers = {**transfer.headers, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if progress.validator:
                # the server sends the whole file (200) if it changed since we saw it
                headers["If-Range"] = progress.validator
        # a file that may be segmented holds spare connections back for its answer;
        # of unknown size, it is one stream (no segmenting on a guess)
        expected = (
            self.budget.expect(host_of(transfer.url), transfer.size)
            if segments
            and offset == 0
            and transfer.size is not None
            and worth_segmenting(transfer.size, self._cfg.segment_min)
            else None
        )
        known = progress.total if progress.total is not None else transfer.size
        try:
            async with get(self._session, transfer.url, headers, self._trusted) as resp:
                start = body_start(resp.status, resp.headers, offset, known, public=transfer.public)
                if start == 0 and offset:
                    log.info("%s: the server sent the whole file", transfer.label)
                if start is None:
                    return f"the server answered a request from byte {offset} with {resp.status}"
                if resp.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
                    # the part already holds every byte the server has
                    progress.total = offset
                    if progress.attempts == 1:
                        progress.resumed_from = offset
                    return None
                why = html_instead(resp.headers.get("Content-Type"), transfer.dest.name)
                if why is not None:
                    raise TransferError(f"{why} (HTTP {resp.status})")
                total = server_total(resp.status, resp.headers, start)
                if start == 0:
                    progress.total = total
                    progress.validator = validator_of(resp)
                else:
                    progress.total = total if total is not None else progress.total
                    progress.validator = validator_of(resp) or progress.validator
                progress.answered = True
                if (
                    expected is not None
                    and resp.status == HTTPStatus.OK
                    and progress.total is not None
                    and should_segment(
                        progress.total, self._cfg.segment_min, resp.headers.get("Accept-Ranges")
                    )
                ):
                    work = Work(progress.total, (), progress.validator)
                    await self._segmented(transfer, part, progress, work, resp, held, expected)
                    return None
                if expected is not None:
                    expected.close()  # one stream: the spare connections are for others
                await self._receive(resp, transfer, part, progress, start, held)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransferError(network_error(exc, transfer.url, self._cfg)) from None
        finally:
            if expected is not None:
                expected.close()
        return None

    async def _finish(
        self, transfer: Transfer, part: Path, progress: _Progress, *, segmented: bool = False
    ) -> None:
        """Verify a complete part's content, then give it its final name.

        Verification reads the whole file, so it runs in a worker thread. A part that
        fails it is deleted (its bytes are wrong, resuming from them cannot help) and
        the failure is a :class:`TransferError`, so the retry policy fetches it again.
        A segmented part loses its record only once its bytes are fsynced and sound:
        from then on it is a complete prefix, which is all a part without one may be.
        """
        try:
            check_dirs(transfer.root, part.parent)
            refuse_link(part)
            if segmented:
                await asyncio.to_thread(fsync, part)
            await asyncio.to_thread(verify_file, part, transfer.dest.name)
        except CorruptFileError as exc:
            held = _held(part)
            _remove(part)
            _remove_record(part)
            _remove_meta(part)
            self._report(transfer, -held)
            log.warning("%s: %s; fetching it again", transfer.label, exc)
            raise
        except OSError as exc:
            raise Refused(disk_error(exc, "reading", part)) from None
        if segmented:
            _remove_record(part)
        if progress.total is None:
            progress.total = _held(part)
        _commit(transfer.root, part, transfer.dest, progress.total)
        _remove_meta(part)

    async def _receive(
        self,
        resp: aiohttp.ClientResponse,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        start: int,
        held: int,
    ) -> None:
        """Stream the body into the part from ``start``; return once it holds every byte.

        Every byte: as many as the server stated (Content-Length, Content-Range), or,
        when it stated none, a chunked body that ended cleanly (aiohttp raises on a cut
        one). A body without a length and without chunking ends like a cut connection,
        so it is taken only at the catalogue's size.
        """
        if progress.attempts == 1 and start:
            progress.resumed_from = start
        position = start
        total = progress.total
        of = f" of {total}" if total is not None else ""
        try:
            # written synchronously: 1 MiB writes to a local disk do not stall the loop
            # long, and the file closes (holding exactly what was written) on cancel.
            with open_part(part, append=bool(start)) as fh:
                if not start:
                    # after the truncation, before any byte: the part and its origin
                    write_meta(part, progress.validator)
                if held > start:
                    self._report(transfer, start - held)
                try:
                    async with speed_floor(self._cfg) as count:
                        async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                            if total is not None and position + len(chunk) > total:
                                raise TransferError(
                                    f"the server sent more than the {total} bytes it stated"
                                )
                            fh.write(chunk)
                            position += len(chunk)
                            progress.fetched += len(chunk)
                            self._report(transfer, len(chunk))
                            count(len(chunk))
                except TooSlow as exc:
                    raise TooSlow(f"{exc} after {position}{of} bytes") from None
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                    reason = network_error(exc, transfer.url, self._cfg)
                    raise TransferError(f"{reason} after {position}{of} bytes") from None
        except OSError as exc:
            raise Refused(disk_error(exc, "writing", part)) from None
        if total is not None:
            if position < total:
                raise TransferError(f"the body ended after {position} of {total} bytes")
            return
        if not is_chunked(resp.headers) and position != transfer.size:
            raise TransferError(
                f"the body ended after {position} bytes with no length stated and not "
                "chunked: cannot tell it from a cut connection"
            )
        progress.total = position

    # -- segmented transfers ----------------------------------------------------------------

    async def _segmented(
        self,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        work: Work,
        first: aiohttp.ClientResponse | None = None,
        held: int = 0,
        expected: Expected | None = None,
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
        if first is not None:
            # the record first: a part that may hold bytes out of order always has one
            try:
                await asyncio.to_thread(write_record, part, work.record())
                await asyncio.to_thread(preallocate, part, work.size)
                _remove_meta(part)  # the record names the validator from now on
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
            _remove(part)
            _remove_record(part)
            raise

    def _report(self, transfer: Transfer, delta: int) -> None:
        if self._on_progress is not None and delta:
            self._on_progress(transfer, delta)


# -- files ------------------------------------------------------------------------------


def _size_of(path: Path) -> int | None:
    """The size of a regular file at ``path`` (never through a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _held(part: Path) -> int:
    try:
        return os.lstat(part).st_size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise Refused(disk_error(exc, "reading", part)) from None


def _commit(root: Path | None, part: Path, dest: Path, size: int) -> None:
    """Give a complete part its final name, durably.

    The rename is the only place a file gets its final name, and it comes after the
    size check and the fsync: a crash leaves a part to resume, never a short file
    that a later pass would take for a finished one. A symbolic link planted at the
    final name (or on the way to it) is refused, not replaced.
    """
    try:
        check_dirs(root, dest.parent)
        refuse_link(dest)
        fd = os.open(part, os.O_RDWR | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
            held = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if held != size:  # callers checked already; this line is the promise itself
            raise TransferError(f"the partial file holds {held} of {size} bytes")
        os.replace(part, dest)
    except OSError as exc:
        raise Refused(disk_error(exc, "finishing", dest)) from None
    try:  # make the rename itself survive a power cut; not every file system allows it
        fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(part: Path) -> None:
    try:
        part.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", part, exc.strerror)


def _remove_record(part: Path) -> None:
    try:
        remove_record(part)
    except OSError as exc:
        log.warning("cannot remove the segment record of %s: %s", part, exc.strerror)


def _remove_meta(part: Path) -> None:
    try:
        remove_meta(part)
    except OSError as exc:
        log.warning("cannot remove the validator of %s: %s", part, exc.strerror)


def after_fallback(cloud: Outcome, mast: Outcome) -> Outcome:
    """One outcome for a product tried in the cloud first and then at MAST.

    MAST's answer decides the state and the error (it is the archive; the cloud is
    a copy). The counters cover both: every attempt and every byte received.
    """
    return Outcome(
        state=mast.state,
        fetched=cloud.fetched + mast.fetched,
        resumed_from=cloud.resumed_from,
        attempts=cloud.attempts + mast.attempts,
        error=mast.error,
        size=mast.size,
        size_note=mast.size_note,
    )
