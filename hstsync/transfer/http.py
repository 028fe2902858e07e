"""The HTTP edge of a transfer: the session, one GET, and what its answer means.

Owns the process's :class:`aiohttp.ClientSession` (:func:`open_session`), the GET that
follows redirects itself so credentials stay on the configured origin (:func:`get`),
and the reading of a response: :func:`body_start` (where a body goes in the part, or
which failure it means), ``Content-Range`` and ``Retry-After`` parsing, the strong
validator sent back as ``If-Range``. Besides the shared failures it raises
:class:`~hstsync.errors.RetryLater` (429/503, with the server's wait) and
:class:`~hstsync.errors.Refused` (another attempt would not change it).

Failure texts are written here from status codes, errno names and byte counts, never
copied from an aiohttp exception, whose text can carry the request's headers
(``Authorization``). No retries, no files: :mod:`hstsync.transfer.downloader` decides
what to do with an answer, :mod:`~hstsync.transfer.partfile` and
:mod:`~hstsync.transfer.segmented` write the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp
import yarl

from hstsync import __version__
from hstsync.config import DownloadConfig
from hstsync.errors import (
    AuthRequiredError,
    Refused,
    RetryLater,
    SizeMismatchError,
)

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


def mismatch(server: int, catalogue: int, *, at_least: bool = False) -> str:
    """``server sends N bytes, catalogue says M``: the text of a :class:`SizeMismatchError`."""
    sends = "sends at least" if at_least else "sends"
    return f"server {sends} {server} bytes, catalogue says {catalogue}"


def network_error(exc: BaseException, url: str, cfg: DownloadConfig) -> str:
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
async def get(
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
            raise Refused("the server redirected to something that is not a URL") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise Refused(f"the server redirected to a {target.scheme or 'relative'} URL")
        if target.origin() != origin:
            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        url = str(target)
    raise Refused(f"the server redirected more than {MAX_REDIRECTS} times")


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# -- failures an answer can mean -----------------------------------------------------


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
        raise Refused("not found on the server (HTTP 404)")
    if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
        wait = None
        if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
            wait = retry_after_seconds(headers.get("Retry-After"))
        raise RetryLater(f"the server answered {_status_text(status)}", wait)
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # appending encoded bytes to a partial file would corrupt it silently
        raise Refused(f"the server sent a {encoding}-encoded body despite identity")

    if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
        unsatisfied = _UNSATISFIED_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if unsatisfied and int(unsatisfied.group(1)) != size:
            raise SizeMismatchError(mismatch(int(unsatisfied.group(1)), size))
        # nothing left to send: complete if the part holds the whole file
        return offset if offset and offset == size else None
    if status == HTTPStatus.OK:
        # the whole file, whatever Range asked for: it replaces the part
        declared = headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) != size:
            raise SizeMismatchError(mismatch(int(declared), size))
        return 0
    if status == HTTPStatus.PARTIAL_CONTENT:
        content_range = parse_content_range(headers.get("Content-Range"))
        if content_range is None:
            return None
        first, _, total = content_range
        if total is not None and total != size:
            raise SizeMismatchError(mismatch(total, size))
        # Append only a body that starts exactly where the part ends: any other start
        # would shift every byte after it, and the final size check could not tell.
        return offset if first == offset else None
    raise Refused(f"the server answered {_status_text(status)}")


def validator_of(resp: aiohttp.ClientResponse) -> str | None:
    """A strong ETag or the Last-Modified date, to send back as If-Range."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range takes strong validators only
        return etag
    return resp.headers.get("Last-Modified")
