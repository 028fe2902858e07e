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
#: MAST's path-lookup service: dataURI -> the file's path (its key in the bucket)
PATH_LOOKUP_PATH = "/api/v0.1/path_lookup/"
#: the emulator's own control calls (:mod:`~hstsync.emulator.server.admin`): not MAST's
ADMIN_PATH = "/emulator/admin"
#: where the second listener (the "cdn") serves redirected downloads
CDN_PATH = "/cdn/HST/product"
#: the public bucket, path-style (``s3.amazonaws.com/stpubdata/KEY``): ``Emulator.cloud_url``
CLOUD_BUCKET = "stpubdata"


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request as the emulator received it; ``body_bytes_sent`` grows as it streams.

    ``body_bytes_sent`` counts the bytes of a file's body written to the connection
    (handed to the transport: a client that hangs up early is counted for what was
    written before the server noticed, which for a plain GET may be far more than the
    client read; ask for a Range to read a head). ``status`` is the answer's status
    (0 until it is known); ``data_uri`` the product whose body it asked for."""

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
    #: the status its handler answered (304 included); 0 until then
    status: int = 0
    #: the dataURI of the product whose file it asked for ("" for other requests)
    data_uri: str = ""


#: the emulator serving the app (its type is only named here: lifecycle.py, which
#: defines Emulator, imports this module)
EMULATOR: web.AppKey[Emulator] = web.AppKey("emulator")
SITE = web.AppKey("site", str)
RECORD = web.RequestKey("record", RecordedRequest)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def record_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    if request.path.startswith(ADMIN_PATH + "/"):
        # the test's (or the person's) own channel, not archive traffic: not recorded
        return await handler(request)
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
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        record.status = exc.status
        raise
    record.status = response.status
    return response


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
