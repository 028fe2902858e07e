"""What leaves the machine, and how fast: downloads through the site's proxy (the
environment's, as astroquery's lookups, or ``[download] proxy``), errors that name it,
``[download] bwlimit`` by time of day, and ``max_bytes_per_pass``.

The proxy is a real forwarding HTTP proxy on loopback; the daemon is a real process.
Bandwidth waits are asked of a clock that only the limiter's own sleeps move, so the
tests read what was asked for, never the wall clock.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import run_hstsync, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import DownloadConfig, Timetable
from hstsync.config.load import parse_bwlimit
from hstsync.emulator import Emulator
from hstsync.errors import ConfigError
from hstsync.model import ProductState, RequestState
from hstsync.store import Store
from hstsync.transfer import Bandwidth, Downloader, Transfer, open_session

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


class ForwardingProxy:
    """A plain HTTP forward proxy: every request it is sent (absolute-form) is made to its
    origin and the answer passed back. ``seen`` has each URL asked for."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = str(request.url) if request.raw_path.startswith("/") else request.raw_path
        self.seen.append(target)
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Host", None)
        body = await request.read()
        async with self._client.request(
            request.method, target, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            resp = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    resp.headers[key] = value
            if upstream.content_length is not None:
                resp.content_length = upstream.content_length
            await resp.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def __aenter__(self) -> ForwardingProxy:
        self._client = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._client is not None
        await self._runner.cleanup()
        await self._client.close()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardingProxy]:
    async with ForwardingProxy() as forwarding:
        yield forwarding


def clean_env(**proxies: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return {**env, "HSTSYNC_NO_KEYRING": "1", **proxies}


def downloads(proxy: ForwardingProxy) -> set[str]:
    """The files the proxy was asked for (a large one in several ranges)."""
    return {url.rsplit("/", 1)[1] for url in proxy.seen if "/Download/file" in url}


SIX = {f"o5870{obs}_{kind}.fits" for obs in ("1010", "1030") for kind in ("x1d", "x2d", "flt")}


# -- the proxy ---------------------------------------------------------------------------


async def test_downloads_go_through_the_environments_proxy_as_lookups_do(
    tmp_path: Path, emulator: Emulator, proxy: ForwardingProxy
) -> None:
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)

    code, _, err = await run_hstsync(
        "run", "--once", "--config", str(config), env=clean_env(HTTP_PROXY=proxy.url)
    )

    assert code == 0, err
    assert downloads(proxy) == SIX  # every file, through the proxy
    assert any("/invoke" in url for url in proxy.seen)  # and the lookups, by requests


async def test_no_proxy_leaves_the_archive_out_of_the_proxy(
    tmp_path: Path, emulator: Emulator, proxy: ForwardingProxy
) -> None:
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    env = clean_env(HTTP_PROXY=proxy.url, NO_PROXY="127.0.0.1")

    code, _, err = await run_hstsync("run", "--once", "--config", str(config), env=env)

    assert code == 0, err
    assert proxy.seen == []


async def test_download_proxy_in_the_configuration_wins_over_the_environment(
    tmp_path: Path, emulator: Emulator, proxy: ForwardingProxy
) -> None:
    config = write_config(tmp_path, emulator.url, download={"proxy": f'"{proxy.url}"'})
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)

    code, _, err = await run_hstsync("run", "--once", "--config", str(config), env=clean_env())

    assert code == 0, err
    assert downloads(proxy) == SIX


async def test_a_proxy_that_refuses_is_named_in_the_error_not_the_archive(
    tmp_path: Path, emulator: Emulator
) -> None:
    dead = "http://127.0.0.1:9"  # discard: nothing listens there
    cfg = DownloadConfig(retries=0, timeout=2.0, proxy=dead)
    async with open_session(cfg) as session:
        outcome = await Downloader(session, cfg).fetch(
            Transfer(
                url=f"{emulator.url}/api/v0.1/Download/file?uri=mast:HST/product/o58701010_x1d.fits",
                dest=tmp_path / "x1d.fits",
                size=77760,
                label="x1d",
            )
        )
    assert outcome.state is ProductState.FAILED
    assert outcome.error is not None and "through the proxy 127.0.0.1:9" in outcome.error


def test_a_download_proxy_must_be_an_http_url() -> None:
    from hstsync.config import parse_config

    doc = {"paths": {"requests": "r", "mirror": "m", "database": "d"}}
    with pytest.raises(ConfigError, match=r"download\.proxy"):
        parse_config({**doc, "download": {"proxy": "proxy.example.org:3128"}}, base=Path("/"))


# -- bandwidth ---------------------------------------------------------------------------


def test_bwlimit_reads_rclones_timetable() -> None:
    table = parse_bwlimit("08:00,2M 19:00,off", "download.bwlimit")
    assert table == Timetable(((480, 2 * 2**20), (1140, None)))
    assert table.rate_at(7 * 60) is None  # before 08:00: the evening's "off" still holds
    assert table.rate_at(8 * 60) == 2 * 2**20
    assert table.rate_at(18 * 60 + 59) == 2 * 2**20
    assert table.rate_at(19 * 60) is None
    assert parse_bwlimit("512kB", "k") == Timetable(((0, 512_000.0),))
    assert parse_bwlimit("off", "k") == parse_bwlimit("", "k") == Timetable()
    for bad in ("25:00,1M", "08:00", "08:00,1M 08:00,off", "fast"):
        with pytest.raises(ConfigError, match=r"download\.bwlimit"):
            parse_bwlimit(bad, "download.bwlimit")


class FakeTime:
    """A clock only the limiter's sleeps move, and the sleeps it was asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_bandwidth_holds_transfers_to_the_rate_of_the_hour(
    tmp_path: Path, emulator: Emulator
) -> None:
    time = FakeTime()
    minute = [9 * 60]
    table = parse_bwlimit("08:00,1M 19:00,off", "k")
    bandwidth = Bandwidth(table, minute=lambda: minute[0], clock=time.clock, sleep=time.sleep)
    cfg = DownloadConfig(segment_min=0, timeout=5.0)
    name = "o58701010_x2d.fits"  # 14,474,880 bytes
    async with open_session(cfg) as session:
        outcome = await Downloader(session, cfg, bandwidth=bandwidth).fetch(
            Transfer(
                url=f"{emulator.url}/api/v0.1/Download/file?uri=mast:HST/product/{name}",
                dest=tmp_path / name,
                size=14474880,
                label=name,
            )
        )
    assert outcome.state is ProductState.DONE
    # 1 MiB/s at 09:00: the transfer was held for its size at that rate
    assert sum(time.slept) == pytest.approx(14474880 / 2**20, rel=0.02)

    minute[0] = 20 * 60  # after 19:00, off
    time.slept.clear()
    await bandwidth.spend(50 * 2**20)
    assert time.slept == []


# -- max_bytes_per_pass ----------------------------------------------------------------


async def test_a_pass_fetches_at_most_max_bytes_and_says_the_rest_waits(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, emulator.url, download={"max_bytes_per_pass": 20_000_000})
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)

    code, _, err = await run_hstsync("run", "--once", "--config", str(config))

    assert code == 1, err
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        row = store.get_request("7291")
        assert row is not None and row.state is RequestState.INCOMPLETE
        assert row.last_error and "wait for the next pass" in row.last_error
        assert "max_bytes_per_pass" in row.last_error
        done = [p for p in store.products("7291") if p.state is ProductState.DONE]
    assert 0 < sum(p.product.size or 0 for p in done) < 50_175_360

    code, _, err = await run_hstsync("run", "--once", "--config", str(config))
    code, _, err = await run_hstsync("run", "--once", "--config", str(config))
    assert code == 0, err  # three passes of at most ~20 MB: all 50 MB are there
