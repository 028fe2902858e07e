"""The portal: ``columnsconfig``, the ``invoke`` of ``Mast.Caom.Filtered`` (``.Position``)
and ``Mast.Caom.Products`` with its EXECUTING polling, paging and the portal quirks
(slow, paged, retyped replies, too many obsids refused), and the session, bundle and
path-lookup endpoints (``whoami``, ``Download/bundle.sh``, ``path_lookup``)."""

from __future__ import annotations

import asyncio
import json
import math

from aiohttp import web

from hstsync.emulator.columns import CAOM_FIELDS, DISTANCE_FIELD, PRODUCT_FIELDS, columns_config
from hstsync.emulator.faults import Endpoint, FaultKind
from hstsync.emulator.server.protocol import (
    DOWNLOAD_PATH,
    EMULATOR,
    hang_up,
    status_fault,
    token_of,
)

DEFAULT_PAGESIZE = 50000


async def columnsconfig(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return web.json_response(columns_config(str(form.get("colConfigId", ""))))


def _mashup_error(msg: str) -> web.Response:
    return web.json_response({"status": "ERROR", "msg": msg, "data": [], "fields": []})


async def invoke(request: web.Request) -> web.StreamResponse:
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
        return await hang_up(request, hang.delay)
    if status := faults.get(FaultKind.STATUS):
        return await status_fault(status)
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
    too_many = quirks.max_obsids_per_call is not None and len(obsids) > quirks.max_obsids_per_call
    if too_many and quirks.too_many_obsids == "hang":
        # a whole-proposal product list that never comes back (astroquery#2507)
        return await hang_up(request, 0)
    if quirks.latency_per_obsid and obsids:
        # the archive's product lookups slow down with the number of obsids asked for
        await asyncio.sleep(quirks.latency_per_obsid * len(obsids))
    if too_many:
        # the real message is not in our evidence; this one names no limit, as the
        # archive publishes none
        return _mashup_error("The query timed out before it completed")
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


# -- sessions, bundles, paths ----------------------------------------------------------------


async def path_lookup(request: web.Request) -> web.StreamResponse:
    """MAST's path-lookup service, which astroquery's cloud module asks for a product's
    key in the public bucket: ``?uri=A&uri=B`` -> ``{A: {"status_code": 200, "path":
    "/hst/public/..."}, B: {"status_code": 404, "path": null}}`` (the shape of
    astroquery's recorded ``mast_relative_path.json``). Rights aside, as the bucket
    keys are; a product without a key (no copy in the bucket) is 404."""
    emu = request.app[EMULATOR]
    answer: dict[str, dict[str, object]] = {}
    for uri in request.query.getall("uri", []):
        product = emu.catalogue.product(uri)
        key = (
            product.cloud_key
            if product is not None and product.data_uri == uri and product.served
            else None
        )
        answer[uri] = (
            {"status_code": 200, "path": f"/{key}"}
            if key
            else {
                "status_code": 404,
                "path": None,
            }
        )
    return web.json_response(answer)


async def whoami(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    token = token_of(request)
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


async def bundle(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    form = await request.post()
    lines = ["#!/bin/sh", "# cURL script written by the hstsync MAST emulator", "set -e"]
    for uri in form.getall("uri", []):
        product = emu.catalogue.product(str(uri))
        if product is None or not product.served:
            continue
        rel = f"mastDownload/{product.obs_collection}/{product.obs_id}/{product.filename}"
        lines.append(
            f"curl --globoff --create-dirs -sSf -o '{rel}' "
            f"'{emu.url}{DOWNLOAD_PATH}?uri={product.data_uri}'"
        )
    return web.Response(text="\n".join(lines) + "\n", content_type="text/x-shellscript")
