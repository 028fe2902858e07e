"""Transfers of one file over HTTP: Range resume, retries, size and content verification.

A file is written as ``FILE.part`` beside its final name and renamed only once its
size matches the catalogue's and its content passes :mod:`hstsync.verify` (FITS
CHECKSUM/DATASUM), so a file under its final name is always complete and sound.
A part that fails verification is deleted and fetched again, within the retries.
An interrupted transfer resumes from the bytes on disk; a server that ignores Range
(or answers with the wrong range) makes the transfer start again from zero.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
    stop_after_attempt,
    wait_exponential_jitter,
)

from hstsync import __version__
from hstsync.config import DownloadConfig
from hstsync.errors import AuthRequiredError, HstsyncError, SizeMismatchError, TransferError
from hstsync.model import ProductState
from hstsync.verify import CorruptFileError, verify_file

log = logging.getLogger(__name__)

#: bytes per read: large reads are several times faster than small ones on fast links
CHUNK_SIZE = 1 << 20
CONNECT_TIMEOUT = 30.0
#: the longest a server's Retry-After can hold a transfer (and its slot) back
RETRY_AFTER_CAP = 3600.0

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def open_session(
    cfg: DownloadConfig, *, user_agent: str = f"hstsync/{__version__}"
) -> aiohttp.ClientSession:
    """The process's one HTTP session, its connection pool capped at ``cfg.concurrency``."""
    connector = aiohttp.TCPConnector(limit=cfg.concurrency, limit_per_host=cfg.concurrency)
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
            await self._retrying(transfer)(self._attempt, transfer, part, progress)
        except AuthRequiredError as exc:
            state, error = ProductState.AUTH_REQUIRED, str(exc)
        except SizeMismatchError as exc:
            # the bytes on disk belong to a file the catalogue does not describe
            error = str(exc)
            _remove(part)
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

    def _retrying(self, transfer: Transfer) -> AsyncRetrying:
        """The retry policy, all of it. A fresh object per transfer (it holds state)."""
        attempts = self._cfg.retries + 1

        def announce(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d failed)",
                transfer.label,
                exc,
                state.upcoming_sleep,
                state.attempt_number,
                attempts,
            )

        return AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(attempts),
            wait=_Backoff(self._cfg),
            retry=retry_if_exception_type(TransferError),
            before_sleep=announce,
            reraise=True,
        )

    async def _attempt(self, transfer: Transfer, part: Path, progress: _Progress) -> None:
        """One attempt: resume from the bytes on disk, or start over once if we must."""
        progress.attempts += 1
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

    async def _exchange(
        self, transfer: Transfer, part: Path, progress: _Progress, offset: int, held: int
    ) -> str | None:
        """One request. None when the file is in place; else why to start from zero."""
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
                    await self._receive(resp, transfer, part, progress, start, held)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransferError(_network_error(exc, transfer.url, self._cfg)) from None
        await self._finish(transfer, part)
        return None

    async def _finish(self, transfer: Transfer, part: Path) -> None:
        """Verify a complete part's content, then give it its final name.

        Verification reads the whole file, so it runs in a worker thread. A part that
        fails it is deleted (its bytes are wrong, resuming from them cannot help) and
        the failure is a :class:`TransferError`, so the retry policy fetches it again.
        """
        try:
            await asyncio.to_thread(verify_file, part, transfer.dest.name)
        except CorruptFileError as exc:
            held = _held(part)
            _remove(part)
            self._report(transfer, -held)
            log.warning("%s: %s; fetching it again", transfer.label, exc)
            raise
        except OSError as exc:
            raise _Refused(_disk_error(exc, "reading", part)) from None
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
