"""Has the archive's copy of a file changed since ours was fetched? One small request.

:func:`probe` asks for the head of the file (at most :data:`HEAD_BYTES`, with ``Range``)
and, when we hold the validators of the answer ours came from, makes the request
conditional (``If-None-Match``, ``If-Modified-Since``): a ``304`` says "the same" and
costs no body. Otherwise the answer is compared with our copy: another length, another
validator, or another head says it changed. For a FITS file the head compared is the
primary header (a reprocessing rewrites ``DATE``, ``CAL_VER``, ``CHECKSUM`` and the
reference-file keywords there); for other files the head bytes. A change past the
first :data:`HEAD_BYTES` of a non-FITS file of the same length and without validators
is the one change a probe cannot see (``verify`` hashes our copy, but the archive
publishes no hash to compare it with).

Failures are data (:class:`Probe` with ``state`` ``failed``/``refused``/``gone``), their
texts written as the downloader's are; retries follow the same policy.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from tenacity import AsyncRetrying

from hstsync.errors import AuthRequiredError, Refused, TransferError
from hstsync.transfer.budget import host_of
from hstsync.transfer.disk import disk_error, read_small
from hstsync.transfer.fetch import Link
from hstsync.transfer.header import keywords, primary_header
from hstsync.transfer.http import body_start, get, network_error, server_total
from hstsync.transfer.outcome import Transfer
from hstsync.transfer.retry import Attempts, retrying, with_retries

#: the most a probe reads of the archive's copy of an unchanged file
HEAD_BYTES = 64 * 1024


class Verdict(enum.StrEnum):
    """What a probe found."""

    SAME = "same"
    CHANGED = "changed"
    #: the archive answers 404 for it (while its catalogue may still list it)
    GONE = "gone"
    #: the archive refused it without a valid token
    REFUSED = "refused"
    #: no answer could be had (network, 5xx after the retries, a local read error)
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Probe:
    verdict: Verdict
    #: why (changed: what differs; failed: the error)
    reason: str | None = None
    #: the archive's length, when its answer stated it
    size: int | None = None
    #: the archive's ETag and Last-Modified, when sent (a 304 sends ours back)
    etag: str | None = None
    last_modified: str | None = None
    #: what a reprocessing shows in our header and in the archive's (FITS)
    ours: Mapping[str, str] | None = None
    theirs: Mapping[str, str] | None = None


async def probe(
    link: Link, transfer: Transfer, *, etag: str | None, last_modified: str | None
) -> Probe:
    """Whether ``transfer.dest`` (ours, in place) is still the file at ``transfer.url``.

    Never raises but CancelledError. ``etag``/``last_modified``: the validators of the
    answer ours came from (None: not known, the heads are compared).
    """
    try:
        local = read_small(transfer.dest, HEAD_BYTES)
        size = transfer.dest.stat().st_size
    except OSError as exc:
        return Probe(Verdict.FAILED, disk_error(exc, "reading", transfer.dest))
    if local is None:
        return Probe(Verdict.FAILED, f"{transfer.dest} is not there")
    headers = {**transfer.headers, "Accept-Encoding": "identity"}
    headers["Range"] = f"bytes=0-{max(min(HEAD_BYTES, size), 1) - 1}"
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    attempts = Attempts(link.cfg.retries + 1)

    async def once() -> Probe:
        attempts.count += 1
        async with link.budget.connection(host_of(transfer.url)):
            return await _ask(link, transfer, headers, local, size, etag)

    def policy() -> AsyncRetrying:
        return retrying(link.cfg, transfer, attempts, sleep=link.sleep)

    try:
        return await with_retries(once, policy)
    except AuthRequiredError as exc:
        return Probe(Verdict.REFUSED, str(exc))
    except (TransferError, Refused) as exc:
        gone = "404" in str(exc)
        return Probe(Verdict.GONE if gone else Verdict.FAILED, str(exc))


async def _ask(
    link: Link,
    transfer: Transfer,
    headers: Mapping[str, str],
    local: bytes,
    size: int,
    etag: str | None,
) -> Probe:
    try:
        async with get(link.session, transfer.url, headers, link.trusted) as resp:
            theirs_etag = resp.headers.get("ETag")
            modified = resp.headers.get("Last-Modified")
            if resp.status == HTTPStatus.NOT_MODIFIED:
                return Probe(Verdict.SAME, None, size, theirs_etag or etag, modified)
            start = body_start(resp.status, resp.headers, 0, None, public=transfer.public)
            if start is None:
                raise TransferError(f"the server answered a head request with {resp.status}")
            total = server_total(resp.status, resp.headers, 0)
            head = await resp.content.read(min(HEAD_BYTES, size))
            # the rest of a whole body that ignored Range is not read: the
            # connection is closed when the answer is released
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise TransferError(network_error(exc, transfer.url, link.cfg)) from None
    found = Probe(Verdict.SAME, None, total, theirs_etag, modified)
    why = _difference(transfer.dest.name, local, head, size, total, etag, theirs_etag)
    if why is None:
        return found
    ours, theirs = primary_header(local), primary_header(head)
    return Probe(
        Verdict.CHANGED,
        why,
        total,
        theirs_etag,
        modified,
        keywords(ours) if ours is not None else None,
        keywords(theirs) if theirs is not None else None,
    )


def _difference(
    name: str,
    local: bytes,
    head: bytes,
    size: int,
    total: int | None,
    etag: str | None,
    theirs_etag: str | None,
) -> str | None:
    """Why the archive's answer is not our file, or None."""
    if total is not None and total != size:
        return f"the archive's copy is {total:,} bytes, ours {size:,}"
    if etag and theirs_etag and etag != theirs_etag:
        return "the archive's copy has another ETag"
    ours, theirs = primary_header(local), primary_header(head)
    if name.lower().endswith(".fits") and ours is not None and theirs is not None:
        if ours != theirs:
            return "the archive's copy has another primary header"
        return None
    if local[: len(head)] != head or len(head) < min(len(local), HEAD_BYTES):
        return "the archive's copy begins with other bytes"
    return None
