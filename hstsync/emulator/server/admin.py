"""The emulator's own control calls: change the archive while it runs in another process.

A test, a benchmark or a person drives an emulator started by ``hstsync emulator``
over HTTP, with JSON bodies, under ``/emulator/admin/`` of the archive listener only
(the cdn has none), and only from a loopback address (403 otherwise, whatever
``--host`` says):

- ``POST reprocess`` ``{"key": K, "size": N?, "software": true?}`` —
  :meth:`~hstsync.emulator.catalogue.Catalogue.reprocess`
- ``POST withdraw`` ``{"key": K, "served": true?}`` —
  :meth:`~hstsync.emulator.catalogue.Catalogue.withdraw`; ``POST restore``
  ``{"key": K}`` lists it again
- ``POST validators`` ``{"on": false}`` (the whole emulator) or
  ``{"on": false, "key": K}`` (one product)
- ``GET served`` — ``{"total": bytes, "by_uri": {dataURI: bytes}}``, the body bytes
  written so far

``K`` is a dataURI or a productFilename. A product call answers the product as it is
now (``dataURI``, ``productFilename``, ``size``, ``generation``, ``cal_ver``,
``prvversion``, ``withdrawn``, ``served``, ``validators``); an unknown product is 404,
a malformed body 400. These requests are not MAST's: they are not recorded in
``Emulator.requests``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hstsync.emulator.catalogue import CatalogueProduct
from hstsync.emulator.server.protocol import ADMIN_PATH, EMULATOR


class _BadRequest(Exception):
    pass


def _loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text() or "{}")
    except json.JSONDecodeError as exc:
        raise _BadRequest(f"the body is not JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _key(body: dict[str, Any]) -> str:
    key = body.get("key")
    if not isinstance(key, str) or not key:
        raise _BadRequest('"key" (a dataURI or a productFilename) is required')
    return key


def _flag(body: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _BadRequest(f'"{name}" must be true or false')
    return value


def _size(body: dict[str, Any]) -> int | None:
    size = body.get("size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _BadRequest('"size" must be a whole number of bytes')
    return size


def describe(product: CatalogueProduct) -> dict[str, Any]:
    """What a product call answers: the product as it is now."""
    return {
        "dataURI": product.data_uri,
        "productFilename": product.filename,
        "size": product.size,
        "generation": product.generation,
        "cal_ver": product.cal_ver,
        "prvversion": product.prvversion,
        "withdrawn": product.withdrawn,
        "served": product.served,
        "validators": product.validators,
    }


async def reprocess(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    catalogue = request.app[EMULATOR].catalogue
    size = _size(body)
    software = _flag(body, "software", True)
    return describe(catalogue.reprocess(_key(body), size=size, software=software))


async def withdraw(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    catalogue = request.app[EMULATOR].catalogue
    return describe(catalogue.withdraw(_key(body), served=_flag(body, "served", True)))


async def restore(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    return describe(request.app[EMULATOR].catalogue.restore(_key(body)))


async def validators(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    emu = request.app[EMULATOR]
    on = _flag(body, "on")
    if "key" not in body:
        emu.validators = on
        return {"validators": emu.validators}
    key = _key(body)
    product = emu.catalogue.product(key)
    if product is None:
        raise KeyError(f"no product {key!r}")
    product.validators = on  # one attribute: the server thread sees it whole
    return describe(product)


Action = Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any]]]


def _handler(action: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _loopback(request):
            return web.json_response({"error": "admin calls come from loopback only"}, status=403)
        try:
            return web.json_response(await action(request, await _body(request)))
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)

    return handle


async def served(request: web.Request) -> web.StreamResponse:
    if not _loopback(request):
        return web.json_response({"error": "admin calls come from loopback only"}, status=403)
    emu = request.app[EMULATOR]
    return web.json_response({"total": emu.bytes_sent, "by_uri": dict(emu.bytes_served)})


def add_admin_routes(app: web.Application) -> None:
    """Register the control calls on ``app`` (the archive listener's)."""
    for name, action in (
        ("reprocess", reprocess),
        ("withdraw", withdraw),
        ("restore", restore),
        ("validators", validators),
    ):
        app.router.add_post(f"{ADMIN_PATH}/{name}", _handler(action))
    app.router.add_get(f"{ADMIN_PATH}/served", served)
