"""The HTTP edge of a transfer: the session, one GET, and what its answer means.

Owns the process's :class:`aiohttp.ClientSession` (:func:`open_session`, through the
proxy downloads take), the GET that follows redirects itself so credentials go only
to trusted hosts (:func:`get`, ``[mast] trusted_hosts`` through
:func:`hstsync.config.token_allowed`), the minimum speed of a body
(:func:`speed_floor`), the HTML error page told from data (:func:`html_instead`), and
the reading of a response: :func:`body_start` (where a body goes in the part, or which
failure it means), ``Content-Range`` and ``Retry-After`` parsing, the strong validator
sent back as ``If-Range``. Besides the shared failures it raises
:class:`~hstsync.errors.RetryLater` (429/503, with the server's wait) and
:class:`~hstsync.errors.Refused` (another attempt would not change it).

Failure texts are written here from status codes, errno names and byte counts, never
copied from an aiohttp exception, whose text can carry the request's headers
(``Authorization``). No retries, no files: :mod:`~hstsync.transfer.answer` judges an
answer against what was asked, and :mod:`~hstsync.transfer.fetch` writes its bytes
(through :mod:`~hstsync.transfer.partfile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp
import yarl

from hstsync import __version__
from hstsync.config import DownloadConfig, default_trusted_hosts, token_allowed
from hstsync.errors import (
    AuthRequiredError,
    Refused,
    RetryLater,
    TooSlow,
)

#: bytes per read: large reads are several times faster than small ones on fast links
CHUNK_SIZE = 1 << 20
CONNECT_TIMEOUT = 30.0
#: the longest a server's Retry-After can hold a transfer (and its slot) back
RETRY_AFTER_CAP = 3600.0

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_SECONDS = re.compile(r"[0-9]{1,9}")
_DIGITS = re.compile(r"[0-9]{1,18}")


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
    # A proxy: the one configured, else the environment's, as astroquery's lookups (a
    # site that lets traffic out only through a proxy resolves and must download too).
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        headers={"User-Agent": user_agent},
        trust_env=not cfg.proxy,
        proxy=cfg.proxy or None,
    )


def proxy_of(url: str, cfg: DownloadConfig) -> str | None:
    """The proxy a request for ``url`` goes through, or None."""
    if cfg.proxy:
        return cfg.proxy
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes START-END/TOTAL`` → (start, end, total or None for ``*``), or None."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP-date) as seconds from ``now``, capped.

    Anything else (``²``, ``-1``, ``1e9``, a number of ten digits or more, a date that
    does not parse) is None: the backoff decides. Never raises.
    """
    value = (value or "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):  # ASCII digits only: str.isdigit() takes "²"
        return min(float(value), RETRY_AFTER_CAP)
    if value[0].isdigit() or value[0] in "+-.":
        return None  # a number that is not one we take
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = (when - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(delta, 0.0), RETRY_AFTER_CAP)


def size_note(catalogue: int | None, server: int) -> str | None:
    """``catalogue says 1,234 bytes, the server sent 1,200``, or None when they agree."""
    if catalogue is None or catalogue == server:
        return None
    return f"catalogue says {catalogue:,} bytes, the server sent {server:,}"


def html_instead(content_type: str | None, filename: str) -> str | None:
    """Why an answer is an error page rather than the file, or None.

    A 200 with ``text/html`` for a product whose name is not an HTML page is the
    archive's (or a proxy's) error page: its bytes must never reach the part.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ("text/html", "application/xhtml+xml"):
        return None
    if filename.lower().endswith((".html", ".htm", ".xhtml")):
        return None
    return f"the server sent an HTML page ({kind}) instead of the file"


def network_error(exc: BaseException, url: str, cfg: DownloadConfig) -> str:
    """A short, header-free description of a network failure, naming the proxy the
    request went through (a proxy that refuses is not the archive's fault)."""
    reason = _network_error(exc, url, cfg)
    proxy = proxy_of(url, cfg)
    if proxy is None:
        return reason
    shown = urlsplit(proxy)  # never its credentials
    return f"{reason} (through the proxy {shown.hostname}:{shown.port or shown.scheme})"


def _network_error(exc: BaseException, url: str, cfg: DownloadConfig) -> str:
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
#: headers that carry credentials: sent only where config.token_allowed says
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@contextlib.asynccontextmanager
async def get(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    trusted: Sequence[str] | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET ``url``, following redirects here rather than inside aiohttp.

    The credential headers (Authorization, Cookie) go to a hop only if
    :func:`hstsync.config.token_allowed` allows its URL under ``trusted`` (``[mast]
    trusted_hosts``; None: the first URL's host only). A redirect elsewhere is followed
    without them, and a later hop back to a trusted host does not get them again.
    aiohttp is never left to decide: it follows no redirect itself.
    """
    if trusted is None:
        trusted = default_trusted_hosts(url)[:1]  # its host, and its port if not the scheme's
    credentials = {k: v for k, v in headers.items() if k.lower() in _CREDENTIAL_HEADERS}
    plain = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    for _ in range(MAX_REDIRECTS + 1):
        sent = {**plain, **credentials} if credentials and token_allowed(url, trusted) else plain
        resp = await session.get(url, headers=sent, allow_redirects=False)
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
        if not token_allowed(str(target), trusted):
            credentials = {}  # once off the trusted hosts, never again for this request
        url = str(target)
    raise Refused(f"the server redirected more than {MAX_REDIRECTS} times")


@contextlib.asynccontextmanager
async def speed_floor(cfg: DownloadConfig) -> AsyncIterator[Callable[[int], None]]:
    """Abort a body that arrives slower than ``min_speed`` bytes/s for ``min_speed_time``
    seconds (curl's --speed-limit/--speed-time): yields ``count(n)`` to call per chunk.

    A deadline ``min_speed_time`` ahead moves forward each time the window's bytes are
    in, so a trickle is cut within that time even when no chunk comes at all (the
    ``timeout`` of ``sock_read`` only bounds silence). Raises :class:`TooSlow`.
    """
    if cfg.min_speed <= 0:
        yield lambda n: None
        return
    loop = asyncio.get_running_loop()
    window = cfg.min_speed_time
    need = cfg.min_speed * window
    got = 0.0
    scope = asyncio.timeout_at(loop.time() + window)

    def count(n: int) -> None:
        nonlocal got
        got += n
        if got >= need:
            got = 0.0
            scope.reschedule(loop.time() + window)

    try:
        async with scope:
            yield count
    except TimeoutError:
        if not scope.expired():
            raise
        raise TooSlow(
            f"slower than {cfg.min_speed:,} bytes/s for {window:g} s "
            f"({int(got):,} bytes in the last window)"
        ) from None


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# -- failures an answer can mean -----------------------------------------------------


RATE_LIMITED = (
    "refused by the server (HTTP 403) although the product is public — possibly rate limiting"
)


def body_start(
    status: int, headers: Mapping[str, str], offset: int, size: int | None, *, public: bool = False
) -> int | None:
    """Where a response's body goes in the part, which holds ``offset`` bytes.

    ``size`` is the length the server stated earlier, if any (a 416 says the part is
    complete when its total equals the part's length). None means: start again from
    zero, without Range. Raises for the answers that end or delay the transfer. Pure,
    so every answer a server can give is tested without a server. ``headers`` must
    look names up case-insensitively (aiohttp's do). The catalogue's size plays no
    part: what the server states wins (:func:`server_total`).
    """
    if status == HTTPStatus.FORBIDDEN and public:
        # public data needs no token: a 403 for it is most often a rate limiter
        raise RetryLater(RATE_LIMITED, retry_after_seconds(headers.get("Retry-After")))
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
        total = int(unsatisfied.group(1)) if unsatisfied else size
        # nothing left to send: complete if the part holds exactly the whole file
        return offset if offset and offset == total else None
    if status == HTTPStatus.OK:
        return 0  # the whole file, whatever Range asked for: it replaces the part
    if status == HTTPStatus.PARTIAL_CONTENT:
        content_range = parse_content_range(headers.get("Content-Range"))
        if content_range is None:
            return None
        first, last, total = content_range
        if last < first or (total is not None and last >= total):
            return None
        # Append only a body that starts exactly where the part ends: any other start
        # would shift every byte after it, and the final size check could not tell.
        return offset if first == offset else None
    raise Refused(f"the server answered {_status_text(status)}")


def server_total(status: int, headers: Mapping[str, str], start: int) -> int | None:
    """The file's length as this answer states it: ``Content-Range``'s total, or
    ``start`` + ``Content-Length`` for a 200; None when it says nothing (chunked)."""
    if status == HTTPStatus.PARTIAL_CONTENT:
        content_range = parse_content_range(headers.get("Content-Range"))
        return content_range[2] if content_range is not None else None
    if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
        unsatisfied = _UNSATISFIED_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        return int(unsatisfied.group(1)) if unsatisfied else None
    declared = headers.get("Content-Length", "").strip()
    if status == HTTPStatus.OK and _DIGITS.fullmatch(declared):
        return start + int(declared)
    return None


def is_chunked(headers: Mapping[str, str]) -> bool:
    """Whether the body's end is marked in the stream (so a cut is told from an end)."""
    return "chunked" in headers.get("Transfer-Encoding", "").lower()


def validator_of(headers: Mapping[str, str]) -> str | None:
    """An answer's strong ETag or its Last-Modified date, to send back as If-Range."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range takes strong validators only
        return etag
    return headers.get("Last-Modified")
