"""Transfers of one file over HTTP: Range resume, retries, size and content verification.

A file is written as ``FILE.part`` beside its final name and renamed only once its
size matches the catalogue's and its content passes :mod:`hstsync.verify` (FITS
CHECKSUM/DATASUM), so a file under its final name is always complete and sound.
A part that fails verification is deleted and fetched again, within the retries.
An interrupted transfer resumes from the bytes on disk; a server that ignores Range
(or answers with the wrong range) makes the transfer start again from zero.

A file larger than ``segment_min`` from a server that sends ``Accept-Ranges: bytes``
is fetched as several Range segments at once into one preallocated part, each written
at its offset; :mod:`hstsync.segments` decides which ranges remain and how to split,
and keeps the ``.part.segments`` record that lets each resume on its own. Every
request holds a token of the :class:`~hstsync.budget.ConnectionBudget`: a file's
first connection waits its turn, further segments only take spare tokens, so whole
files fill the budget first and the largest remaining files get what is left.

Retry policy — which failures, how many attempts, how long to wait, ``Retry-After``
— lives in :meth:`Downloader._retrying` and nowhere else. Only :class:`TransferError`
is retried; a size the catalogue disagrees with, a refusal (401/403/404) or a disk
that cannot be written ends the transfer at once.

:meth:`Downloader.fetch` never raises for a failed transfer: failures are data in
the :class:`Outcome`. Their texts are written here from status codes, errno names
and byte counts, never copied from an aiohttp exception, whose text can carry the
request's headers (``Authorization``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import yarl
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from hstsync import __version__
from hstsync.budget import ConnectionBudget, host_of
from hstsync.config import DownloadConfig
from hstsync.errors import AuthRequiredError, HstsyncError, SizeMismatchError, TransferError
from hstsync.model import ProductState
from hstsync.segments import (
    Range,
    SegmentRecord,
    has_record,
    largest,
    merge,
    missing,
    read_record,
    remove_record,
    share,
    should_segment,
    split_point,
    write_record,
)
from hstsync.verify import CorruptFileError, verify_file

log = logging.getLogger(__name__)

#: bytes per read: large reads are several times faster than small ones on fast links
CHUNK_SIZE = 1 << 20
CONNECT_TIMEOUT = 30.0
#: the longest a server's Retry-After can hold a transfer (and its slot) back
RETRY_AFTER_CAP = 3600.0
#: how often a segmented transfer records its progress beside the part (and at each
#: segment's end): what a crash can cost is this much transfer time, never a segment
CHECKPOINT_SECONDS = 1.0

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def open_session(
    cfg: DownloadConfig, *, user_agent: str = f"hstsync/{__version__}"
) -> aiohttp.ClientSession:
    """The process's one HTTP session, its pool capped at ``cfg.connections`` (``per_host``
    to one host): the same numbers as the downloader's budget, so no request waits in
    aiohttp's queue holding a token."""
    connector = aiohttp.TCPConnector(limit=cfg.connections, limit_per_host=cfg.per_host)
    # aiohttp's default timeout has total=300, which kills a long transfer mid-file:
    # bound the silence of a connection instead, never the length of a transfer.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=cfg.timeout)
    # auto_decompress=False: the bytes on disk must be the bytes the archive stores.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        headers={"User-Agent": user_agent},
    )


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file to fetch. ``headers`` (e.g. Authorization) are sent, never logged."""

    url: str
    dest: Path
    size: int
    label: str
    # repr=False: a Transfer in a log line or a traceback must not show the token
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a transfer ended.

    ``fetched`` counts body bytes received over the network by this call;
    ``resumed_from`` the bytes of an existing ``.part`` kept at the first attempt.
    """

    state: ProductState
    fetched: int
    resumed_from: int
    attempts: int
    error: str | None


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# -- pure helpers ---------------------------------------------------------------------


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes START-END/TOTAL`` → (start, end, total or None for ``*``), or None."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP-date) as seconds from ``now``, capped."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), RETRY_AFTER_CAP)


def _mismatch(server: int, catalogue: int, *, at_least: bool = False) -> str:
    sends = "sends at least" if at_least else "sends"
    return f"server {sends} {server} bytes, catalogue says {catalogue}"


_ERRNO_WORDS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "a file is in the way",
    errno.EIO: "I/O error",
}


def _disk_error(exc: OSError, doing: str, path: Path) -> str:
    """``disk full (ENOSPC) writing /srv/hst/….part``."""
    code = exc.errno or 0
    word = _ERRNO_WORDS.get(code) or exc.strerror or type(exc).__name__
    name = errno.errorcode.get(code)
    return f"{word} ({name}) {doing} {path}" if name else f"{word} {doing} {path}"


def _network_error(exc: BaseException, url: str, cfg: DownloadConfig) -> str:
    """A short, header-free description of a network failure."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connecting to the server timed out"
    if isinstance(exc, TimeoutError):
        return f"no data from the server for {cfg.timeout:g} s"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection closed before the body was complete"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientConnectorError):
        parts = urlsplit(url)
        return f"cannot connect to {parts.hostname}:{parts.port or parts.scheme}"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return f"network error ({errno.errorcode[exc.errno]})"
    return f"network error ({type(exc).__name__})"


#: redirects followed for one request
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: headers that carry credentials: sent to the first URL's origin only
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@contextlib.asynccontextmanager
async def _get(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET ``url``, following redirects here rather than inside aiohttp.

    The token goes to the configured MAST host only: a redirect to another origin
    (host, port or scheme, so https -> http too) is followed without Authorization
    or Cookie, and a later hop back does not get them again. aiohttp 3.14 strips
    them on its own; doing it here keeps that promise whatever aiohttp does.
    """
    origin = yarl.URL(url).origin()
    for _ in range(MAX_REDIRECTS + 1):
        resp = await session.get(url, headers=headers, allow_redirects=False)
        location = resp.headers.get("Location")
        if resp.status not in _REDIRECT_STATUSES or not location:
            try:
                yield resp
            finally:
                resp.release()
            return
        resp.release()
        try:
            target = resp.url.join(yarl.URL(location))
        except ValueError:
            raise _Refused("the server redirected to something that is not a URL") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise _Refused(f"the server redirected to a {target.scheme or 'relative'} URL")
        if target.origin() != origin:
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        url = str(target)
    raise _Refused(f"the server redirected more than {MAX_REDIRECTS} times")


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# -- failures this module distinguishes --------------------------------------------------


class _RetryLater(TransferError):
    """A transient refusal (429/503) whose server may have said when to come back."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Refused(HstsyncError):
    """A failure another attempt would not change: 404, other 4xx, an unwritable disk."""


class _RangesRefused(HstsyncError):
    """A segment request was not answered with its range (200, a wrong 206, a changed
    file): the segmented transfer is given up for one whole-file transfer."""


@dataclass(slots=True)
class _Progress:
    """What one :meth:`Downloader.fetch` call has done so far."""

    attempts: int = 0
    fetched: int = 0
    resumed_from: int = 0
    #: a strong ETag or Last-Modified seen this call, sent back as If-Range
    validator: str | None = None


class _Backoff:
    """Exponential backoff with jitter, raised to the server's Retry-After if it sent one."""

    def __init__(self, cfg: DownloadConfig) -> None:
        self._exponential = wait_exponential_jitter(
            multiplier=cfg.backoff, max=cfg.backoff_max, jitter=cfg.backoff
        )

    def __call__(self, state: RetryCallState) -> float:
        wait = self._exponential(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _RetryLater) and exc.retry_after is not None:
            # a lower bound: the server's wish wins over a shorter backoff, and
            # backoff_max does not cut it short (RETRY_AFTER_CAP does).
            wait = max(wait, exc.retry_after)
        return wait


def body_start(status: int, headers: Mapping[str, str], offset: int, size: int) -> int | None:
    """Where a response's body goes in a file of ``size`` bytes whose part holds ``offset``.

    None means: start again from zero, without Range. Raises for the answers that end
    or delay the transfer. Pure, so every answer a server can give is tested without
    a server. ``headers`` must look names up case-insensitively (aiohttp's do).
    """
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        raise AuthRequiredError(
            f"the archive refused this file without a valid MAST token (HTTP {status})"
        )
    if status == HTTPStatus.NOT_FOUND:
        raise _Refused("not found on the server (HTTP 404)")
    if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
        wait = None
        if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
            wait = retry_after_seconds(headers.get("Retry-After"))
        raise _RetryLater(f"the server answered {_status_text(status)}", wait)
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # appending encoded bytes to a partial file would corrupt it silently
        raise _Refused(f"the server sent a {encoding}-encoded body despite identity")

    if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
        unsatisfied = _UNSATISFIED_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if unsatisfied and int(unsatisfied.group(1)) != size:
            raise SizeMismatchError(_mismatch(int(unsatisfied.group(1)), size))
        # nothing left to send: complete if the part holds the whole file
        return offset if offset and offset == size else None
    if status == HTTPStatus.OK:
        # the whole file, whatever Range asked for: it replaces the part
        declared = headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) != size:
            raise SizeMismatchError(_mismatch(int(declared), size))
        return 0
    if status == HTTPStatus.PARTIAL_CONTENT:
        content_range = parse_content_range(headers.get("Content-Range"))
        if content_range is None:
            return None
        first, _, total = content_range
        if total is not None and total != size:
            raise SizeMismatchError(_mismatch(total, size))
        # Append only a body that starts exactly where the part ends: any other start
        # would shift every byte after it, and the final size check could not tell.
        return offset if first == offset else None
    raise _Refused(f"the server answered {_status_text(status)}")


# -- the downloader ---------------------------------------------------------------------


class Downloader:
    """Fetches files into place, one :meth:`fetch` per file, on a shared session.

    ``on_progress(transfer, delta)`` follows the bytes held in the ``.part``: positive
    per chunk written, negative when a partial file is discarded to start again.
    ``sleep`` is what waits between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: DownloadConfig,
        *,
        on_progress: Callable[[Transfer, int], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._cfg = cfg
        self._on_progress = on_progress
        self._sleep = sleep
        self.budget = ConnectionBudget(cfg.connections, cfg.per_host)

    async def fetch(self, transfer: Transfer) -> Outcome:
        """Bring ``transfer.dest`` into place. Raises nothing but CancelledError."""
        label = transfer.label
        if _size_of(transfer.dest) == transfer.size:
            log.info("%s: already present (%d bytes)", label, transfer.size)
            return Outcome(ProductState.DONE, 0, 0, 0, None)

        part = part_path(transfer.dest)
        progress = _Progress()
        state = ProductState.FAILED
        try:
            try:
                transfer.dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _Refused(_disk_error(exc, "creating", transfer.dest.parent)) from None
            await self._retrying(transfer, progress)(self._attempt, transfer, part, progress)
        except AuthRequiredError as exc:
            state, error = ProductState.AUTH_REQUIRED, str(exc)
        except SizeMismatchError as exc:
            # the bytes on disk belong to a file the catalogue does not describe
            error = str(exc)
            _remove(part)
            _remove_record(part)
        except (TransferError, _Refused) as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not take the daemon down with it
            log.error("%s: unexpected %s", label, type(exc).__name__, exc_info=True)
            error = f"unexpected error ({type(exc).__name__})"
        else:
            log.info(
                "%s: done, %d bytes fetched in %d attempt(s)",
                label,
                progress.fetched,
                progress.attempts,
            )
            return Outcome(
                ProductState.DONE, progress.fetched, progress.resumed_from, progress.attempts, None
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
        """One attempt, holding one connection of the budget (more for segments)."""
        progress.attempts += 1
        async with self.budget.connection(host_of(transfer.url)):
            try:
                await self._attempt_on(transfer, part, progress)
            except _RangesRefused as exc:
                # the segmented part is gone (see _segmented): one plain stream from zero
                log.info("%s: %s; fetching the whole file in one request", transfer.label, exc)
                restart = await self._exchange(transfer, part, progress, 0, 0, segments=False)
                if restart is not None:
                    raise TransferError(restart) from None

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
                        transfer.size,
                    )
                await self._segmented(transfer, part, progress, work)
                return
        held = _held(part)
        offset = held
        if held > transfer.size:
            log.info("%s: partial file is larger than the file; starting again", transfer.label)
            offset = 0
        if progress.attempts == 1:
            if offset:
                log.info("%s: resuming at %d of %d bytes", transfer.label, offset, transfer.size)
            else:
                log.info("%s: downloading %d bytes", transfer.label, transfer.size)
        restart = await self._exchange(transfer, part, progress, offset, held)
        if restart is None:
            return
        log.info("%s: %s; starting again from zero", transfer.label, restart)
        restart = await self._exchange(transfer, part, progress, 0, held)
        if restart is not None:
            raise TransferError(restart)

    def _resumable(self, transfer: Transfer, part: Path) -> _Work | None:
        """The work left by a segmented part, or None (part and record removed) when
        the record cannot be trusted for this file."""
        record = read_record(part)
        if record is not None and record.size == transfer.size and _held(part) == transfer.size:
            return _Work(record.size, record.done, record.validator)
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
        """One request. None when the file is in place; else why to start from zero.

        A fresh whole-file answer from a server that takes ranges, for a file larger
        than ``segment_min``, becomes the first segment of a segmented transfer.
        """
        headers = {**transfer.headers, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if progress.validator:
                # the server sends the whole file (200) if it changed since we saw it
                headers["If-Range"] = progress.validator
        try:
            async with _get(self._session, transfer.url, headers) as resp:
                start = body_start(resp.status, resp.headers, offset, transfer.size)
                if start == 0 and offset:
                    log.info("%s: the server sent the whole file", transfer.label)
                if start is None:
                    return f"the server answered a request from byte {offset} with {resp.status}"
                if resp.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
                    # offset == size: the part already holds every byte
                    if progress.attempts == 1:
                        progress.resumed_from = offset
                else:
                    progress.validator = _validator(resp) or progress.validator
                    if (
                        segments
                        and offset == 0
                        and resp.status == HTTPStatus.OK
                        and should_segment(
                            transfer.size, self._cfg.segment_min, resp.headers.get("Accept-Ranges")
                        )
                    ):
                        work = _Work(transfer.size, (), progress.validator)
                        await self._segmented(transfer, part, progress, work, resp, held)
                        return None
                    await self._receive(resp, transfer, part, progress, start, held)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransferError(_network_error(exc, transfer.url, self._cfg)) from None
        await self._finish(transfer, part)
        return None

    async def _finish(self, transfer: Transfer, part: Path, *, segmented: bool = False) -> None:
        """Verify a complete part's content, then give it its final name.

        Verification reads the whole file, so it runs in a worker thread. A part that
        fails it is deleted (its bytes are wrong, resuming from them cannot help) and
        the failure is a :class:`TransferError`, so the retry policy fetches it again.
        A segmented part loses its record only once its bytes are fsynced and sound:
        from then on it is a complete prefix, which is all a part without one may be.
        """
        try:
            if segmented:
                await asyncio.to_thread(_fsync, part)
            await asyncio.to_thread(verify_file, part, transfer.dest.name)
        except CorruptFileError as exc:
            held = _held(part)
            _remove(part)
            _remove_record(part)
            self._report(transfer, -held)
            log.warning("%s: %s; fetching it again", transfer.label, exc)
            raise
        except OSError as exc:
            raise _Refused(_disk_error(exc, "reading", part)) from None
        if segmented:
            _remove_record(part)
        _commit(part, transfer.dest, transfer.size)

    async def _receive(
        self,
        resp: aiohttp.ClientResponse,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        start: int,
        held: int,
    ) -> None:
        """Stream the body into the part from ``start``; return once it holds every byte."""
        if progress.attempts == 1 and start:
            progress.resumed_from = start
        position = start
        try:
            # written synchronously: 1 MiB writes to a local disk do not stall the loop
            # long, and the file closes (holding exactly what was written) on cancel.
            with open(part, "ab" if start else "wb") as fh:  # noqa: ASYNC230
                if held > start:
                    self._report(transfer, start - held)
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                        if position + len(chunk) > transfer.size:
                            raise SizeMismatchError(
                                _mismatch(position + len(chunk), transfer.size, at_least=True)
                            )
                        fh.write(chunk)
                        position += len(chunk)
                        progress.fetched += len(chunk)
                        self._report(transfer, len(chunk))
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                    reason = _network_error(exc, transfer.url, self._cfg)
                    raise TransferError(
                        f"{reason} after {position} of {transfer.size} bytes"
                    ) from None
        except OSError as exc:
            raise _Refused(_disk_error(exc, "writing", part)) from None
        if position < transfer.size:
            raise TransferError(f"the body ended after {position} of {transfer.size} bytes")

    # -- segmented transfers ----------------------------------------------------------------

    async def _segmented(
        self,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        work: _Work,
        first: aiohttp.ClientResponse | None = None,
        held: int = 0,
    ) -> None:
        """Fetch ``work``'s ranges into ``part``, several at once, then finish the file.

        ``first`` is an open whole-file answer (a fresh part): it streams the first
        segment while spare connections split off the rest. Without it the part and its
        record exist already (a resume). This call's own segments run on the
        connection its attempt holds; extra ones on spare tokens (see :meth:`_recruit`).
        """
        host = host_of(transfer.url)
        if first is not None:
            # the record first: a part that may hold bytes out of order always has one
            try:
                await asyncio.to_thread(write_record, part, work.record())
                await asyncio.to_thread(_preallocate, part, transfer.size)
            except OSError as exc:
                raise _Refused(_disk_error(exc, "writing", part)) from None
            self._report(transfer, -held)
            log.info("%s: %d bytes in segments", transfer.label, transfer.size)
        keeper = _Checkpoints(part, work)
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    background = [
                        group.create_task(keeper.run()),
                        group.create_task(
                            self._recruit(transfer, part, progress, work, keeper, group, host)
                        ),
                    ]
                    segment = work.claim()
                    while segment is not None:
                        await self._segment(transfer, part, progress, work, segment, keeper, first)
                        first = None
                        segment = work.claim()
                    for task in background:
                        task.cancel()
            except BaseExceptionGroup as errors:
                raise _most_telling(errors) from None
        except _RangesRefused:
            keeper.close()
            self._report(transfer, -work.held())
            _remove(part)
            _remove_record(part)
            raise
        except BaseException:
            keeper.save_now()  # what every segment holds, for the next attempt or run
            keeper.close()
            raise
        keeper.close()
        if work.remaining():  # every segment ended well, so this is a bug
            raise TransferError(f"segments left {work.remaining()} bytes unfetched")
        await self._finish(transfer, part, segmented=True)

    async def _recruit(
        self,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        work: _Work,
        keeper: _Checkpoints,
        group: asyncio.TaskGroup,
        host: str,
    ) -> None:
        """Put spare connections to work on this file while it is their best use."""
        with self.budget.candidate(host, work.share) as me:
            while True:
                took = False
                while self.budget.try_take(host, me):
                    segment = work.claim()
                    if segment is None:
                        self.budget.give_back(host)
                        break
                    task = group.create_task(
                        self._segment(transfer, part, progress, work, segment, keeper)
                    )
                    # a callback, not a finally: a task cancelled before it starts
                    # never runs its finally, and the token must come back regardless
                    task.add_done_callback(lambda _: self.budget.give_back(host))
                    took = True
                if took:
                    self.budget.poke()  # another file may use what is left
                await self.budget.changed()

    async def _segment(
        self,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        work: _Work,
        segment: _Segment,
        keeper: _Checkpoints,
        first: aiohttp.ClientResponse | None = None,
    ) -> None:
        """One segment to its end, retried on its own from where it stopped."""

        async def once() -> None:
            nonlocal first
            if first is not None:
                resp, first = first, None
                try:
                    await self._stream(resp, transfer, part, progress, segment, keeper)
                finally:
                    resp.release()  # its connection is done, whoever opened it
                return
            headers = {
                **transfer.headers,
                "Accept-Encoding": "identity",
                "Range": f"bytes={segment.position}-{segment.end - 1}",
            }
            if work.validator:
                headers["If-Range"] = work.validator
            try:
                async with _get(self._session, transfer.url, headers) as resp:
                    _check_segment(resp, segment, transfer.size, work)
                    await self._stream(resp, transfer, part, progress, segment, keeper)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                raise TransferError(_network_error(exc, transfer.url, self._cfg)) from None

        try:
            await self._retrying(transfer, progress, segment=True)(once)
        except BaseException:
            work.drop(segment)
            raise
        work.finish(segment)
        keeper.wanted()

    async def _stream(
        self,
        resp: aiohttp.ClientResponse,
        transfer: Transfer,
        part: Path,
        progress: _Progress,
        segment: _Segment,
        keeper: _Checkpoints,
    ) -> None:
        """Write a body at its segment's offsets until the segment's (moving) end."""
        try:
            fd = os.open(part, os.O_WRONLY)
        except OSError as exc:
            raise _Refused(_disk_error(exc, "writing", part)) from None
        try:
            try:
                async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                    # the end moves down when another connection takes the second half
                    n = min(len(chunk), segment.end - segment.position)
                    try:
                        _pwrite(fd, memoryview(chunk)[:n], segment.position)
                    except OSError as exc:
                        raise _Refused(_disk_error(exc, "writing", part)) from None
                    segment.position += n
                    progress.fetched += n
                    self._report(transfer, n)
                    if segment.position >= segment.end:
                        break
                    keeper.tick()
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                reason = _network_error(exc, transfer.url, self._cfg)
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

    def _report(self, transfer: Transfer, delta: int) -> None:
        if self._on_progress is not None and delta:
            self._on_progress(transfer, delta)


# -- files ------------------------------------------------------------------------------


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _held(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise _Refused(_disk_error(exc, "reading", part)) from None


def _validator(resp: aiohttp.ClientResponse) -> str | None:
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range takes strong validators only
        return etag
    return resp.headers.get("Last-Modified")


def _commit(part: Path, dest: Path, size: int) -> None:
    """Give a complete part its final name, durably.

    The rename is the only place a file gets its final name, and it comes after the
    size check and the fsync: a crash leaves a part to resume, never a short file
    that a later pass would take for a finished one.
    """
    try:
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
            held = os.fstat(fh.fileno()).st_size
        if held != size:  # callers checked already; this line is the promise itself
            raise TransferError(f"the partial file holds {held} of {size} bytes")
        os.replace(part, dest)
    except OSError as exc:
        raise _Refused(_disk_error(exc, "finishing", dest)) from None
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _preallocate(part: Path, size: int) -> None:
    """The part at its full size from the start: space is claimed before the bytes
    come (a full disk says so now), and segments write at their offsets."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.ftruncate(fd, size)  # a file system without fallocate: a sparse file
    finally:
        os.close(fd)


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    # written synchronously, like _receive: 1 MiB writes do not stall the loop long
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _check_segment(resp: aiohttp.ClientResponse, segment: _Segment, size: int, work: _Work) -> None:
    """A segment's answer must be its own range, of the file the other segments came from."""
    start = body_start(resp.status, resp.headers, segment.position, size)
    if resp.status != HTTPStatus.PARTIAL_CONTENT or start != segment.position:
        raise _RangesRefused(
            f"the server answered a request for bytes {segment.position}-{segment.end - 1} "
            f"with {resp.status}"
        )
    validator = _validator(resp)
    if work.validator and validator and validator != work.validator:
        raise _RangesRefused("the file changed on the server during the transfer")
    work.validator = work.validator or validator


#: which of several segments' failures a transfer reports: the one that decides
_PRECEDENCE: tuple[type[BaseException], ...] = (
    AuthRequiredError,
    SizeMismatchError,
    _Refused,
    _RangesRefused,
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


@dataclass(slots=True, eq=False)
class _Segment:
    """A range being fetched: bytes ``start..position`` are written, ``position..end``
    are still to come; ``end`` moves down when the range is split."""

    start: int
    position: int
    end: int


class _Work:
    """The ranges of one segmented file: done, waiting for a connection, or running."""

    def __init__(self, size: int, done: Iterable[Range], validator: str | None) -> None:
        self.size = size
        self.validator = validator
        self._done = merge(done)
        self._waiting = [_Segment(a, a, b) for a, b in missing(size, self._done)]
        self._running: list[_Segment] = []

    def claim(self) -> _Segment | None:
        """A range for one more connection: one waiting, or the second half of the
        running range with the most left; None when no split is worth a request."""
        if self._waiting:
            segment = self._waiting.pop(0)
        else:
            index = largest([(s.position, s.end) for s in self._running])
            if index is None:
                return None
            victim = self._running[index]
            cut = split_point(victim.position, victim.end)
            assert cut is not None
            segment = _Segment(cut, cut, victim.end)
            victim.end = cut
        self._running.append(segment)
        return segment

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
        if not self._waiting and largest([(s.position, s.end) for s in self._running]) is None:
            return None
        return share(self.remaining(), len(self._running))

    def record(self) -> SegmentRecord:
        return SegmentRecord(self.size, tuple(self.snapshot()), self.validator)


class _Checkpoints:
    """Writes a segmented part's record: every CHECKPOINT_SECONDS while bytes arrive,
    soon after each segment ends, and once more when the transfer stops.

    The part is fsynced before each record that names its bytes. Writes run in a
    worker thread under a lock; :meth:`close` waits for one in progress and stops all
    later ones, so no record can reappear after the part is finished or removed.
    """

    def __init__(self, part: Path, work: _Work) -> None:
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
            _fsync(self._part)  # the bytes first, then the record that names them
            write_record(self._part, record)
            self._written = record.done

    def close(self) -> None:
        with self._lock:
            self._closed = True
