"""Helpers the emulator's tests share: astroquery pointed at the emulator, and plain
aiohttp requests for its files."""

from __future__ import annotations

from typing import Any

import aiohttp
from multidict import CIMultiDict

from hstsync.emulator import Emulator


def observations(url: str) -> Any:
    """An astroquery ObservationsClass whose every endpoint is the emulator."""
    from astroquery.mast import ObservationsClass

    obs = ObservationsClass()
    portal = obs._portal_api_connection
    portal.MAST_REQUEST_URL = url + "/api/v0/invoke"
    portal.COLUMNS_CONFIG_URL = url + "/portal/Mashup/Mashup.asmx/columnsconfig"
    portal.MAST_DOWNLOAD_URL = url + "/api/v0.1/Download/file"
    portal.MAST_BUNDLE_URL = url + "/api/v0.1/Download/bundle"
    obs._auth_obj.SESSION_INFO_URL = url + "/whoami"
    return obs


def download_url(emu: Emulator, uri: str) -> str:
    return f"{emu.url}/api/v0.1/Download/file?uri={uri}"


def invokes(emu: Emulator) -> list[str]:
    return [r.path for r in emu.requests if r.path == "/api/v0/invoke"]


async def fetch(
    emu: Emulator, uri: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, download_url(emu, uri), headers=headers) as resp,
    ):
        body = await resp.read()
        return resp.status, resp.headers.copy(), body


class PageIgnoringArchive:
    """An archive that answers every page of an observation query with its first page,
    as an archive that ignores ``page`` would: the emulator behind a small proxy that
    rewrites ``page`` to 1 in ``Mast.Caom.Filtered`` requests, its first ``limit`` of
    them (then it lets the page through, so a client that never stops still ends).
    Files are not served here: their requests are redirected to the emulator."""

    def __init__(self, emulator: Emulator, limit: int = 20) -> None:
        self.emulator = emulator
        self.limit = limit
        #: observation queries received
        self.listed = 0
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> PageIgnoringArchive:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _forward(self, request: Any) -> Any:
        import json
        from urllib.parse import urlencode

        from aiohttp import web

        target = self.emulator.url + request.path_qs
        if request.path.endswith("/Download/file"):
            raise web.HTTPTemporaryRedirect(target)
        body = await request.read()
        if request.path == "/api/v0/invoke":
            form = dict(await request.post())
            mashup = json.loads(str(form["request"]))
            if mashup.get("service") == "Mast.Caom.Filtered":
                self.listed += 1
                if self.listed <= self.limit:
                    mashup["page"] = 1
            form["request"] = json.dumps(mashup)
            body = urlencode(form).encode()
        headers = {"Content-Type": request.headers.get("Content-Type", "text/plain")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, target, data=body, headers=headers) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )
