"""What the emulator's handlers share: its paths, the recorded request, the app's keys,
the middleware that records every request, and the small answers (a status fault, a
hang) every endpoint may give."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from hstsync.emulator.faults import Fault

if TYPE_CHECKING:
    from hstsync.emulator.server.lifecycle import Emulator

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


#: the emulator serving the app (its type is only named here: lifecycle.py, which
#: defines Emulator, imports this module)
EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator")
SITE = web.AppKey("site", str)
RECORD = web.RequestKey("record", RecordedRequest)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def record_request(request: web.Request, handler: Handler) -> web.StreamResponse:
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


def token_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return request.cookies.get("mast_token") or None


async def status_fault(fault: Fault) -> web.Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    return web.Response(
        status=fault.status, headers=headers, text=f"Emulated HTTP {fault.status}\n"
    )


async def hang_up(request: web.Request, delay: float) -> web.StreamResponse:
    """Accept the request and never answer: wait ``delay`` seconds (0: until the
    emulator closes), then drop the connection without a byte."""
    emu = request.app[EMULATOR]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(emu._closing.wait(), delay if delay > 0 else None)
    if request.transport is not None and not emu._closing.is_set():
        request.transport.abort()
    return web.Response(status=503, text="Emulated hang\n")
