"""The file endpoints: ``Download/file`` (redirects, rights, faults), the cdn's signed
URLs for redirected downloads, and the public bucket's anonymous S3 objects. Each
finds the product and its faults; :func:`~hstsync.emulator.server.delivery.send`
sends the bytes."""

from __future__ import annotations

import asyncio
import hmac
from urllib.parse import quote

from aiohttp import web

from hstsync.emulator.faults import Endpoint, FaultKind
from hstsync.emulator.server.delivery import send
from hstsync.emulator.server.protocol import (
    CDN_PATH,
    DOWNLOAD_PATH,
    EMULATOR,
    status_fault,
    token_of,
)


async def download_file(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    head = request.method == "HEAD"
    product = emu.catalogue.product(request.query.get("uri", ""))
    if product is None or product.data_uri != request.query.get("uri") or not product.served:
        return web.Response(status=404, text="File not found\n")
    target = emu.redirects.get(product.filename)
    if target is not None and "hop" not in request.query:
        # an archive handing the transfer to another host (a CDN, a cloud bucket)
        raise web.HTTPFound(f"{target}{DOWNLOAD_PATH}?uri={product.data_uri}&hop=1")
    if product.redirect:
        # the archive checks rights, then hands the transfer to its cdn with a signed
        # URL (the cdn asks for no token); body faults are taken where the bytes flow
        if product.exclusive and emu.user_for(token_of(request)) is None:
            return _needstoken_of()
        raise web.HTTPFound(
            f"{emu.cdn_url}{CDN_PATH}/{quote(product.filename)}"
            f"?uri={quote(product.data_uri, safe=':/')}&sig={emu.signature(product.data_uri)}"
        )
    faults = emu.faults.take(Endpoint.DOWNLOAD, product.filename, head=head)

    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await status_fault(status)
    if product.exclusive and emu.user_for(token_of(request)) is None:
        return _needstoken_of()

    return await send(
        request,
        product,
        faults,
        {"Content-Disposition": f"attachment; filename={product.filename}"},
    )


def _needstoken_of() -> web.Response:
    return web.Response(
        status=401, text="This file is under exclusive access: a valid MAST token is needed\n"
    )


async def cdn_file(request: web.Request) -> web.StreamResponse:
    """The second listener: a redirected download, by signed URL, with no token asked.
    Download faults (``endpoint`` unset) are taken here, where the bytes come from."""
    emu = request.app[EMULATOR]
    uri = request.query.get("uri", "")
    product = emu.catalogue.product(uri)
    if (
        product is None
        or product.data_uri != uri
        or product.filename != request.match_info["name"]
        or not product.served
    ):
        return web.Response(status=404, text="File not found\n")
    if not hmac.compare_digest(request.query.get("sig", ""), emu.signature(uri)):
        return web.Response(status=403, text="Signature does not match\n")
    faults = emu.faults.take(Endpoint.DOWNLOAD, product.filename, head=request.method == "HEAD")
    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await status_fault(status)
    return await send(
        request,
        product,
        faults,
        {"Content-Disposition": f"attachment; filename={product.filename}"},
    )


async def cloud_object(request: web.Request) -> web.StreamResponse:
    """An anonymous S3 GET/HEAD: public files only, the bytes ``Download/file`` serves."""
    emu = request.app[EMULATOR]
    product = emu.catalogue.cloud_product(request.match_info["key"])
    if product is None:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    faults = emu.faults.take(Endpoint.CLOUD, product.filename, head=request.method == "HEAD")
    if slow := faults.get(FaultKind.SLOW_FIRST_BYTE):
        await asyncio.sleep(slow.delay)
    if status := faults.get(FaultKind.STATUS):
        return await status_fault(status)
    if product.exclusive:
        # exclusive-access data is never in the public bucket; S3 says 403 to anonymous
        # readers of a key they may not see
        return _s3_error(403, "AccessDenied", "Access Denied")
    # S3 always sends Content-Length and honours Range: the product's serving quirks
    # are the archive's, not the bucket's
    return await send(request, product, faults, {"Server": "AmazonS3"}, quirky=False)


def _s3_error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        content_type="application/xml",
        text=f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>",
    )
