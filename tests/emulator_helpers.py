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
