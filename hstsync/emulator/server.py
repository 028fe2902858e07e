"""The MAST stand-in itself: a real aiohttp server on 127.0.0.1.

Owns the HTTP protocol, exactly as far as astroquery.mast and our downloader use it:
``columnsconfig``, the portal's ``invoke`` (with EXECUTING polling and paging),
``Download/file`` (HEAD, GET, Range, ETag/If-Range, token-guarded exclusive data),
``Download/bundle.sh`` and ``whoami``; and, path-style under ``/stpubdata/``, the
S3 bucket of public files (the same bytes, anonymous, exclusive data absent).
Every request is recorded; faults from
:mod:`hstsync.emulator.faults` are applied here; bodies come from
:mod:`hstsync.emulator.fits` and are streamed in large chunks with bounded memory,
paced by ``rate`` (bytes/s per response) after ``latency`` seconds.

The real archive's habits (:mod:`hstsync.emulator.quirks`) are acted on here too:
``Emulator(quirks=PortalQuirks(...))`` and each program's portal quirks slow, page
and retype the portal's replies; a product's ``chunked``, ``ranges``, ``style`` and
``redirect`` shape its download. Redirected downloads land on a second listener,
the "cdn" (``Emulator.cdn_url``: ``cdn_host``, ``localhost`` by default, and a port
of its own), which serves the bytes under a signed URL without asking for a token.
Its requests are recorded in the same ``Emulator.requests`` with ``site="cdn"``,
so a test sees whether an ``Authorization`` header or a cookie followed the redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from urllib.parse import quote

from aiohttp import web

from hstsync.emulator.catalogue import Catalogue, CatalogueProduct, default_catalogue
from hstsync.emulator.columns import CAOM_FIELDS, DISTANCE_FIELD, PRODUCT_FIELDS, columns_config
from hstsync.emulator.faults import Endpoint, Fault, FaultKind, Faults
from hstsync.emulator.fits import Bodies
from hstsync.emulator.quirks import PortalQuirks

log = logging.getLogger(__name__)

#: Bytes per write when no rate limit applies (NOTES: large chunks, not 1 KiB).
CHUNK = 512 * 1024
_MIN_PACED_CHUNK = 16 * 1024
DEFAULT_PAGESIZE = 50000

INVOKE_PATH = "/api/v0/invoke"
COLUMNS_CONFIG_PATH = "/portal/Mashup/Mashup.asmx/columnsconfig"
DOWNLOAD_PATH = "/api/v0.1/Download/file"
BUNDLE_PATH = "/api/v0.1/Download/bundle"
WHOAMI_PATH = "/whoami"
#: where the second listener (the "cdn") serves redirected downloads
CDN_PATH = "/cdn/HST/product"
#: the public bucket, path-style (``s3.amazonaws.com/stpubdata/KEY``): ``Emulator.cloud_url``
CLOUD_BUCKET = "stpubdata"


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request as the emulator received it; ``body_bytes_sent`` grows as it streams."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_bytes_sent: int = 0
    #: the request's own body (the portal's form data), decoded for assertions
    body: str = ""
    #: which listener took it: "archive" (``Emulator.url``) or "cdn" (``cdn_url``)
    site: str = "archive"
    #: the port it arrived on
    port: int = 0


@dataclass(slots=True)
class _Window:
    status: int
    start: int
    length: int
    total: int
    headers: dict[str, str] = field(default_factory=dict)


class Emulator:
    """An async context manager serving ``catalogue`` on ``host:port`` (0: a free port)."""

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float | None = None,
        latency: float = 0.0,
        tokens: dict[str, str] | None = None,
        quirks: PortalQuirks | None = None,
        cdn_host: str = "localhost",
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else default_catalogue()
        self.host = host
        self.port = port
        #: the portal's habits for every reply (a program's own are merged in);
        #: may change while running
        self.quirks = quirks or PortalQuirks()
        #: the host name redirected downloads name; the cdn listens on ``host``
        self.cdn_host = cdn_host
        self.cdn_port = 0
        #: bytes/second per response, None for as fast as possible; may change while running
        self.rate = rate
        #: seconds before the first byte of each response; may change while running
        self.latency = latency
        #: token -> user name, for exclusive-access data and ``whoami``
        self.tokens: dict[str, str] = dict(tokens or {})
        #: token -> when it expires (ISO 8601), shown by ``whoami`` as ``expires``
        self.token_expiry: dict[str, str] = {}
        #: product filename -> another server's base URL: downloads of that file answer
        #: 302 to the same path there (once: the redirected URL carries ``hop=1``)
        self.redirects: dict[str, str] = {}
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        #: body bytes written for downloads so far, over all requests
        self.bytes_sent = 0
        #: the most download bodies ever being sent at once: each counts from its
        #: headers until its last byte is handed to the socket or the client hangs up
        self.peak_downloads = 0
        self._downloading: dict[int, web.Request] = {}
        self._bodies = Bodies()
        self._runner: web.AppRunner | None = None
        self._cdn_runner: web.AppRunner | None = None
        #: how often each distinct query has been asked (for ``executing_rounds``)
        self._asked: dict[str, int] = {}
        #: set on close, so hung handlers let go at once
        self._closing = asyncio.Event()
        self._secret = hashlib.sha256(f"{id(self)}".encode()).digest()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def cloud_url(self) -> str:
        """The bucket's base URL, what ``[download] cloud_base`` points at in tests."""
        return f"{self.url}/{CLOUD_BUCKET}"

    @property
    def cdn_url(self) -> str:
        """The second listener's base URL, where ``redirect`` products' bytes come from."""
        if self._cdn_runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.cdn_host}:{self.cdn_port}"

    def signature(self, data_uri: str) -> str:
        """What the cdn expects in ``sig=`` for this product (the archive signs it)."""
        return hmac.new(self._secret, data_uri.encode(), "sha256").hexdigest()[:32]

    def body(self, data_uri: str) -> bytes:
        """The exact bytes served (with no fault) for the product with this dataURI."""
        product = self.catalogue.product(data_uri)
        if product is None:
            raise KeyError(f"no product {data_uri!r}")
        return self._bodies.get(product.data_uri, product.size, product.style).all()

    def user_for(self, token: str | None) -> str | None:
        return self.tokens.get(token) if token else None

    async def start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[_record])
        app[EMULATOR] = self
        app[SITE] = "archive"
        app.router.add_post(COLUMNS_CONFIG_PATH, _columns_config)
        app.router.add_post(INVOKE_PATH, _invoke)
        app.router.add_get(DOWNLOAD_PATH, _download)  # aiohttp adds HEAD for GET routes
        app.router.add_post(BUNDLE_PATH + ".sh", _bundle)
        app.router.add_get(WHOAMI_PATH, _whoami)
        app.router.add_get(f"/{CLOUD_BUCKET}/{{key:.+}}", _cloud)
        # A stalled or rate-limited transfer must not hold up shutdown for a minute.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        cdn = web.Application(middlewares=[_record])
        cdn[EMULATOR] = self
        cdn[SITE] = "cdn"
        cdn.router.add_get(CDN_PATH + "/{name}", _cdn)
        cdn_runner = web.AppRunner(cdn, access_log=None, shutdown_timeout=0.5)
        await cdn_runner.setup()
        await web.TCPSite(cdn_runner, self.host, 0).start()
        self.cdn_port = int(cdn_runner.addresses[0][1])
        self._cdn_runner = cdn_runner
        log.info("MAST emulator listening on %s (cdn %s)", self.url, self.cdn_url)

    async def close(self) -> None:
        self._closing.set()
        runner, self._runner = self._runner, None
        cdn_runner, self._cdn_runner = self._cdn_runner, None
        if cdn_runner is not None:
            await cdn_runner.cleanup()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


EMULATOR = web.AppKey("emulator", Emulator)
SITE = web.AppKey("site", str)
RECORD = web.RequestKey("record", RecordedRequest)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    record = RecordedRequest(
        request.method,
        request.path,
        request.query_string,
        dict(request.headers),
        site=request.app[SITE],
        port=int(sockname[1]) if sockname else 0,
    )
    if request.method == "POST" and request.can_read_body:
        # aiohttp keeps the bytes read here, so handlers still parse the form.
        record.body = (await request.read()).decode("utf-8", "replace")
    emu.requests.append(record)
    request[RECORD] = record
    if emu.latency > 0:
        await asyncio.sleep(emu.latency)
    return await handler(request)


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return request.cookies.get("mast_token") or None


async def _status_fault(fault: Fault) -> web.Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    return web.Response(
        status=fault.status, headers=headers, text=f"Emulated HTTP {fault.status}\n"
    )


# -- the portal --------------------------------------------------------------------------


async def _columns_config(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return web.json_response(columns_config(str(form.get("colConfigId", ""))))


def _mashup_error(msg: str) -> web.Response:
    return web.json_response({"status": "ERROR", "msg": msg, "data": [], "fields": []})


async def _invoke(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    form = await request.post()
    try:
        mashup = json.loads(str(form["request"]))
        if not isinstance(mashup, dict):
            raise TypeError
        service = str(mashup.get("service", ""))
        params = mashup.get("params") or {}
        page = int(mashup.get("page") or 1)
        pagesize = int(mashup.get("pagesize") or DEFAULT_PAGESIZE)
        if page < 1 or pagesize < 1 or not isinstance(params, dict):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        return _mashup_error("Malformed request: expected form field 'request' with a JSON object")

    faults = emu.faults.take(Endpoint.INVOKE, service)
    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if hang := faults.get(FaultKind.HANG):
        return await _hang(request, hang.delay)
    if status := faults.get(FaultKind.STATUS):
        return await _status_fault(status)
    if FaultKind.INVOKE_EXECUTING in faults:
        return web.json_response({"status": "EXECUTING", "msg": ""})
    if error := faults.get(FaultKind.INVOKE_ERROR):
        return _mashup_error(error.message)

    fields: list[dict[str, str]]
    obsids: list[str] = []
    if service in ("Mast.Caom.Filtered", "Mast.Caom.Filtered.Position"):
        position = None
        if service.endswith(".Position"):
            try:
                ra, dec, radius = (float(x) for x in str(params.get("position", "")).split(","))
            except ValueError:
                return _mashup_error("Malformed position: expected 'ra, dec, radius'")
            position = (ra, dec, radius)
        filters = params.get("filters") or []
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            return _mashup_error("Malformed filters: expected a list of objects")
        rows = emu.catalogue.query(filters, position)
        programs = {str(row.get("proposal_id")) for row in rows}
        fields = [*CAOM_FIELDS, DISTANCE_FIELD] if position else list(CAOM_FIELDS)
        if str(params.get("columns", "")).upper() == "COUNT_BIG(*)":
            rows, fields = [{"Column1": len(rows)}], [{"name": "Column1", "type": "int"}]
    elif service == "Mast.Caom.Products":
        obsids = [o for o in str(params.get("obsid", "")).split(",") if o.strip()]
        rows = emu.catalogue.product_rows(obsids)
        programs = emu.catalogue.programs_of(obsids)
        fields = list(PRODUCT_FIELDS)
    else:
        return _mashup_error(f"Unknown service: {service!r}")

    quirks = emu.quirks.merged(emu.catalogue.portal_quirks(programs))
    if quirks.latency_per_obsid and obsids:
        # the archive's product lookups slow down with the number of obsids asked for
        await asyncio.sleep(quirks.latency_per_obsid * len(obsids))
    if quirks.executing_rounds:
        key = json.dumps([service, params, page, pagesize], sort_keys=True, default=str)
        asked = emu._asked.get(key, 0)
        emu._asked[key] = asked + 1
        if asked < quirks.executing_rounds:
            return web.json_response({"status": "EXECUTING", "msg": ""})
    if service == "Mast.Caom.Products":
        size_type = quirks.size_type(page)
        fields = [{**f, "type": size_type} if f["name"] == "size" else f for f in fields]
        rows = [_typed_size(row, size_type) for row in rows]

    # Real paging: astroquery asks for page 1, reads pagesFiltered, then asks again
    # with the page number edited in its request string; the reply echoes the page and
    # the page size it used (the server's own cap, ``page_rows``, when smaller).
    pagesize = min(pagesize, quirks.page_rows or pagesize)
    pages = max(1, math.ceil(len(rows) / pagesize))
    chunk = rows[(page - 1) * pagesize : page * pagesize]
    return web.json_response(
        {
            "status": "COMPLETE",
            "msg": "",
            "data": chunk,
            "fields": fields,
            "paging": {
                "page": page,
                "pageSize": pagesize,
                "pagesFiltered": pages,
                "rows": len(chunk),
                "rowsFiltered": len(rows),
                "rowsTotal": len(rows),
            },
        }
    )


def _typed_size(row: dict[str, object], size_type: str) -> dict[str, object]:
    """The row with its catalogue's own (int) size sent as the declared type would be;
    a ``cells`` override (None, a float, a string, a wrong number) is sent as given."""
    value = row.get("size")
    if type(value) is not int or size_type == "int":
        return row
    return {**row, "size": float(value) if size_type == "float" else str(value)}


async def _hang(request: web.Request, delay: float) -> web.StreamResponse:
    """Accept the request and never answer: wait ``delay`` seconds (0: until the
    emulator closes), then drop the connection without a byte."""
    emu = request.app[EMULATOR]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(emu._closing.wait(), delay if delay > 0 else None)
    if request.transport is not None and not emu._closing.is_set():
        request.transport.abort()
    return web.Response(status=503, text="Emulated hang\n")


# -- sessions and bundles ------------------------------------------------------------------


async def _whoami(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    token = _token(request)
    user = emu.user_for(token)
    if user is None or token is None:
        return web.json_response(
            {"anon": True, "ezid": None, "attrib": {}, "scopes": [], "session": None, "token": None}
        )
    return web.json_response(
        {
            "anon": False,
            "ezid": user,
            "eppn": f"{user}@stsci.edu",
            "attrib": {"display_name": user, "email": f"{user}@example.org", "internal": "0"},
            "scopes": ["mast:user:info", "mast:exclusive_access"],
            "session": None,
            "token": token[:8] + "...",
            **({"expires": emu.token_expiry[token]} if token in emu.token_expiry else {}),
        }
    )


async def _bundle(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    form = await request.post()
    lines = ["#!/bin/sh", "# cURL script written by the hstsync MAST emulator", "set -e"]
    for uri in form.getall("uri", []):
        product = emu.catalogue.product(str(uri))
        if product is None:
            continue
        rel = f"mastDownload/{product.obs_collection}/{product.obs_id}/{product.filename}"
        lines.append(
            f"curl --globoff --create-dirs -sSf -o '{rel}' "
            f"'{emu.url}{DOWNLOAD_PATH}?uri={product.data_uri}'"
        )
    return web.Response(text="\n".join(lines) + "\n", content_type="text/x-shellscript")


# -- downloads -----------------------------------------------------------------------------


def _validators(product: CatalogueProduct, total: int) -> tuple[str, str]:
    tag = hashlib.sha1(f"{product.data_uri}|{total}|{product.version}".encode()).hexdigest()
    return f'"{tag[:20]}"', formatdate(product.modified, usegmt=True)


def _window(request: web.Request, total: int, etag: str, modified: str, ranged: bool) -> _Window:
    """Which bytes to send: the whole body (200), one range (206) or none (416)."""
    header = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range")
    if not ranged or not header or (if_range is not None and if_range not in (etag, modified)):
        return _Window(200, 0, total, total)
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return _Window(200, 0, total, total)  # not a form we serve: the whole body
    first, _, last = spec.strip().partition("-")
    try:
        if first:
            start = int(first)
            end = int(last) if last else total - 1
        else:  # suffix range: the last N bytes
            start, end = max(0, total - int(last)), total - 1
    except ValueError:
        return _Window(200, 0, total, total)
    if start >= total or end < start:
        return _Window(416, 0, 0, total, {"Content-Range": f"bytes */{total}"})
    end = min(end, total - 1)
    return _Window(
        206, start, end - start + 1, total, {"Content-Range": f"bytes {start}-{end}/{total}"}
    )


async def _flush(request: web.Request) -> None:
    """Wait (up to 2 s) until what we wrote has left the process, so a cut comes at a
    known byte rather than wherever the transport's buffer happened to be."""
    transport = request.transport
    for _ in range(1000):
        if transport is None or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.002)


async def _download(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    head = request.method == "HEAD"
    product = emu.catalogue.product(request.query.get("uri", ""))
    if product is None or product.data_uri != request.query.get("uri"):
        return web.Response(status=404, text="File not found\n")
    target = emu.redirects.get(product.filename)
    if target is not None and "hop" not in request.query:
        # an archive handing the transfer to another host (a CDN, a cloud bucket)
        raise web.HTTPFound(f"{target}{DOWNLOAD_PATH}?uri={product.data_uri}&hop=1")
    if product.redirect:
        # the archive checks rights, then hands the transfer to its cdn with a signed
        # URL (the cdn asks for no token); body faults are taken where the bytes flow
        if product.exclusive and emu.user_for(_token(request)) is None:
            return _needs_token()
        raise web.HTTPFound(
            f"{emu.cdn_url}{CDN_PATH}/{quote(product.filename)}"
            f"?uri={quote(product.data_uri, safe=':/')}&sig={emu.signature(product.data_uri)}"
        )
    faults = emu.faults.take(Endpoint.DOWNLOAD, product.filename, head=head)

    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await _status_fault(status)
    if product.exclusive and emu.user_for(_token(request)) is None:
        return _needs_token()

    return await _send(
        request,
        product,
        faults,
        {"Content-Disposition": f"attachment; filename={product.filename}"},
    )


def _needs_token() -> web.Response:
    return web.Response(
        status=401, text="This file is under exclusive access: a valid MAST token is needed\n"
    )


async def _cdn(request: web.Request) -> web.StreamResponse:
    """The second listener: a redirected download, by signed URL, with no token asked.
    Download faults (``endpoint`` unset) are taken here, where the bytes come from."""
    emu = request.app[EMULATOR]
    uri = request.query.get("uri", "")
    product = emu.catalogue.product(uri)
    if product is None or product.data_uri != uri or product.filename != request.match_info["name"]:
        return web.Response(status=404, text="File not found\n")
    if not hmac.compare_digest(request.query.get("sig", ""), emu.signature(uri)):
        return web.Response(status=403, text="Signature does not match\n")
    faults = emu.faults.take(Endpoint.DOWNLOAD, product.filename, head=request.method == "HEAD")
    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await _status_fault(status)
    return await _send(
        request,
        product,
        faults,
        {"Content-Disposition": f"attachment; filename={product.filename}"},
    )


async def _cloud(request: web.Request) -> web.StreamResponse:
    """An anonymous S3 GET/HEAD: public files only, the bytes ``Download/file`` serves."""
    emu = request.app[EMULATOR]
    product = emu.catalogue.cloud_product(request.match_info["key"])
    if product is None:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    faults = emu.faults.take(Endpoint.CLOUD, product.filename, head=request.method == "HEAD")
    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await _status_fault(status)
    if product.exclusive:
        # exclusive-access data is never in the public bucket; S3 says 403 to anonymous
        # readers of a key they may not see
        return _s3_error(403, "AccessDenied", "Access Denied")
    # S3 always sends Content-Length and honours Range: the product's serving quirks
    # are the archive's, not the bucket's
    return await _send(request, product, faults, {"Server": "AmazonS3"}, quirky=False)


def _s3_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        content_type="application/xml",
        text=f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>",
    )


def _count_download(emu: Emulator, request: web.Request) -> None:
    # a connection the client has closed no longer counts, noticed by the handler or not
    emu._downloading = {
        key: r
        for key, r in emu._downloading.items()
        if r.transport is not None and not r.transport.is_closing()
    }
    emu._downloading[id(request)] = request
    emu.peak_downloads = max(emu.peak_downloads, len(emu._downloading))


async def _send(
    request: web.Request,
    product: CatalogueProduct,
    faults: dict[FaultKind, Fault],
    extra: dict[str, str],
    *,
    quirky: bool = True,
) -> web.StreamResponse:
    """Answer a GET or HEAD for ``product``'s body: Range, validators, body faults, pacing;
    with ``quirky``, the product's ``chunked`` and ``ranges`` habits too."""
    emu = request.app[EMULATOR]
    record = request[RECORD]
    head = request.method == "HEAD"
    body = emu._bodies.get(product.data_uri, product.size, product.style)
    wrong = faults.get(FaultKind.WRONG_SIZE)
    total = max(0, product.size + (wrong.after if wrong else 0))
    etag, modified = _validators(product, total)
    ranges = not quirky or product.ranges
    chunked = quirky and product.chunked
    window = _window(
        request, total, etag, modified, ranges and FaultKind.IGNORE_RANGE not in faults
    )
    headers = {
        **({"Accept-Ranges": "bytes"} if ranges else {}),
        "ETag": etag,
        "Last-Modified": modified,
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
    _count_download(emu, request)

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
                await _flush(request)
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
            await response.write(data)
            sent += n
            record.body_bytes_sent += n
            emu.bytes_sent += n
            if rate:
                ahead = sent / rate - (loop.time() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if sent < window.length:
            await _flush(request)
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


# -- serving from a thread -------------------------------------------------------------------


@contextlib.contextmanager
def run_in_thread(
    catalogue: Catalogue | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rate: float | None = None,
    latency: float = 0.0,
    tokens: dict[str, str] | None = None,
) -> Iterator[Emulator]:
    """The same :class:`Emulator`, served by a background thread's loop (for sync callers)."""
    emu = Emulator(catalogue, host=host, port=port, rate=rate, latency=latency, tokens=tokens)
    ready = threading.Event()
    failure: list[BaseException] = []
    stopper: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        stopper.append((asyncio.get_running_loop(), stop))
        try:
            async with emu:
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()

    def main() -> None:
        with contextlib.suppress(BaseException):
            asyncio.run(serve())

    thread = threading.Thread(target=main, name="mast-emulator", daemon=True)
    thread.start()
    ready.wait(30)
    if failure or not stopper:
        thread.join(5)
        raise RuntimeError("the MAST emulator did not start") from (failure[0] if failure else None)
    try:
        yield emu
    finally:
        loop, stop = stopper[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
