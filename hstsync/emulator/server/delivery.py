"""Sending a product's body: the validators (ETag, Last-Modified, or none when they
are switched off) and the conditional requests they answer (304), which bytes (the
Range window, If-Range against the validators), body faults (cut, reset, stall,
corrupt, wrong size), pacing by ``Emulator.rate`` in large chunks with bounded
memory, the count of downloads in flight and of the body bytes written."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING

from aiohttp import web

from hstsync.emulator.catalogue import CatalogueProduct
from hstsync.emulator.faults import Fault, FaultKind
from hstsync.emulator.server.protocol import EMULATOR, RECORD

if TYPE_CHECKING:
    from hstsync.emulator.server.lifecycle import Emulator

#: Bytes per write when no rate limit applies: large chunks, not 1 KiB (docs/design.md,
#: "The libraries").
CHUNK = 512 * 1024
_MIN_PACED_CHUNK = 16 * 1024


@dataclass(slots=True)
class Window:
    """Which bytes a response carries: its status, first byte and length of ``total``."""

    status: int
    start: int
    length: int
    total: int
    headers: dict[str, str] = field(default_factory=dict)


def validators(product: CatalogueProduct, total: int) -> tuple[str, str]:
    tag = hashlib.sha1(f"{product.data_uri}|{total}|{product.version}".encode()).hexdigest()
    return f'"{tag[:20]}"', formatdate(product.modified, usegmt=True)


def not_modified(request: web.Request, etag: str, modified: str) -> bool:
    """Whether a GET or HEAD is answered 304 (RFC 9110 13.1.2, 13.1.3, 13.2.2): an
    ``If-None-Match`` naming the ETag (weak comparison) or ``*``; else, only when there
    is no If-None-Match, an ``If-Modified-Since`` no earlier than Last-Modified (an
    invalid date is ignored)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        return any(t == "*" or t.removeprefix("W/") == etag for t in tags)
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        return False  # not an HTTP-date (those say GMT)
    return parsedate_to_datetime(modified) <= when


def range_window(
    request: web.Request, total: int, etag: str | None, modified: str | None, ranged: bool
) -> Window:
    """Which bytes to send: the whole body (200), one range (206) or none (416).

    An If-Range matches only a validator sent (exactly: a strong comparison); with no
    validators (None) it can never match, so the whole body is sent (RFC 9110 13.1.5).
    """
    header = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range")
    current = {v for v in (etag, modified) if v is not None}
    if not ranged or not header or (if_range is not None and if_range not in current):
        return Window(200, 0, total, total)
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return Window(200, 0, total, total)  # not a form we serve: the whole body
    first, _, last = spec.strip().partition("-")
    try:
        if first:
            start = int(first)
            end = int(last) if last else total - 1
        else:  # suffix range: the last N bytes
            start, end = max(0, total - int(last)), total - 1
    except ValueError:
        return Window(200, 0, total, total)
    if start >= total or end < start:
        return Window(416, 0, 0, total, {"Content-Range": f"bytes */{total}"})
    end = min(end, total - 1)
    return Window(
        206, start, end - start + 1, total, {"Content-Range": f"bytes {start}-{end}/{total}"}
    )


async def flush(request: web.Request) -> None:
    """Wait (up to 2 s) until what we wrote has left the process, so a cut comes at a
    known byte rather than wherever the transport's buffer happened to be."""
    transport = request.transport
    for _ in range(1000):
        if transport is None or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.002)


def _countdownload_file(emu: Emulator, request: web.Request) -> None:
    # a connection the client has closed no longer counts, noticed by the handler or not
    emu._downloading = {
        key: r
        for key, r in emu._downloading.items()
        if r.transport is not None and not r.transport.is_closing()
    }
    emu._downloading[id(request)] = request
    emu.peak_downloads = max(emu.peak_downloads, len(emu._downloading))


async def send(
    request: web.Request,
    product: CatalogueProduct,
    faults: dict[FaultKind, Fault],
    extra: dict[str, str],
    *,
    quirky: bool = True,
) -> web.StreamResponse:
    """Answer a GET or HEAD for ``product``'s body: validators and conditional requests
    (when the emulator and the product have them on), Range, body faults, pacing;
    with ``quirky``, the product's ``chunked`` and ``ranges`` habits too."""
    emu = request.app[EMULATOR]
    record = request[RECORD]
    record.data_uri = product.data_uri
    head = request.method == "HEAD"
    body = emu.body_of(product)
    wrong = faults.get(FaultKind.WRONG_SIZE)
    total = max(0, product.size + (wrong.after if wrong else 0))
    etag: str | None = None
    modified: str | None = None
    tagged: dict[str, str] = {}
    if emu.validators and product.validators:
        etag, modified = validators(product, total)
        tagged = {"ETag": etag, "Last-Modified": modified}
        if not_modified(request, etag, modified):
            # no body, no Content-Length; the validators a 200 would carry
            return web.Response(status=304, headers=tagged)
    ranges = not quirky or product.ranges
    chunked = quirky and product.chunked
    window = range_window(
        request, total, etag, modified, ranges and FaultKind.IGNORE_RANGE not in faults
    )
    headers = {
        **({"Accept-Ranges": "bytes"} if ranges else {}),
        **tagged,
        **extra,
        "Content-Type": "application/octet-stream",
        **window.headers,
    }
    response = web.StreamResponse(status=window.status, headers=headers)
    if chunked and window.status != 416:
        # generated on demand: the length is not known up front (HEAD included)
        response.enable_chunked_encoding()
    else:
        response.content_length = window.length
    try:
        await response.prepare(request)
        if head or window.status == 416:
            await response.write_eof()
            return response
    except ConnectionError:
        return response  # gone before the headers (see below)
    _countdownload_file(emu, request)

    cut_fault = faults.get(FaultKind.RESET) or faults.get(FaultKind.SHORT_BODY)
    limit = min(window.length, cut_fault.after) if cut_fault else window.length
    stall = faults.get(FaultKind.STALL)
    stall_at = stall.after if stall else None
    corrupt = faults.get(FaultKind.CORRUPT)
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = 0
    try:
        while sent < limit:
            if stall is not None and stall_at is not None and sent >= stall_at:
                await flush(request)
                await asyncio.sleep(stall.delay)
                stall_at = None
            rate = emu.rate
            size = CHUNK if not rate else int(min(CHUNK, max(_MIN_PACED_CHUNK, rate / 10)))
            n = min(size, limit - sent)
            if stall_at is not None:
                n = min(n, stall_at - sent)
            offset = window.start + sent
            data = body.read(offset, n)
            if corrupt is not None and offset <= corrupt.after < offset + n:
                flipped = bytearray(data)
                flipped[corrupt.after - offset] ^= 0xFF
                data = bytes(flipped)
            if sent + n >= window.length:
                # the client may read the last byte and open its next request at once
                emu._downloading.pop(id(request), None)
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError  # the client is gone: nothing more is written
            try:
                # the whole chunk is handed to the transport before the write waits
                # (drain), so it counts as written even when the client hangs up then
                await response.write(data)
            finally:
                sent += n
                record.body_bytes_sent += n
                emu.bytes_sent += n
                emu.bytes_served[product.data_uri] = emu.bytes_served.get(product.data_uri, 0) + n
            if rate:
                ahead = sent / rate - (loop.time() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if sent < window.length:
            await flush(request)
            if request.transport is not None:
                if cut_fault is not None and cut_fault.kind is FaultKind.RESET:
                    request.transport.abort()
                else:
                    request.transport.close()
            return response
        await response.write_eof()
    except ConnectionError:
        # The client went away (aria2c and parfive close as soon as the last byte is
        # in); that is its business, not a server error.
        pass
    return response
