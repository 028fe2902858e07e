"""The daemon's status endpoint: what a browser, a script and Prometheus see.

The database is a real SQLite file filled by a real ``run_once`` against the emulator;
the endpoint is served on a real socket by ``serving_status``, the daemon's own entry
point, and read with a real HTTP client, a real ``hstsync run`` process, and headless
Chromium where it is installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tutorial import TUTORIAL_BYTES

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, StatusConfig, for_directory
from hstsync.emulator import Emulator
from hstsync.errors import ConfigError
from hstsync.model import Product, ProductState, Request, RequestState
from hstsync.service.daemon import run_once
from hstsync.service.daemon.status import status_document
from hstsync.service.daemon.web import serving_status
from hstsync.store.db import Store

T = TypeVar("T")
HOSTILE = 'x<script>alert("name")</script>&amp;'
HOSTILE_ERROR = "<img src=x onerror=alert(1)> & \"quoted\" 'too'"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def mirrored(tmp_path: Path, emulator: Emulator) -> Config:
    """7291 mirrored by a real pass, plus a request (hostile name) that is incomplete."""
    config = for_directory(tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.05)
    config.paths.requests.mkdir()
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST, encoding="utf-8")
    assert await run_once(config) == 0
    # No manifest file can carry this name, so it goes in through the store, as a
    # database written by an older or other hstsync could hold it.
    with Store(config.paths.database) as store:
        store.upsert_request(Request(name=HOSTILE, proposal_ids=("1",)), "/nowhere.toml")
        store.replace_products(
            HOSTILE,
            [
                Product("mast:HST/product/a_x1d.fits", "HST", "a", "a_x1d.fits", 1000),
                Product("mast:HST/product/a_flt.fits", "HST", "a", "a_flt.fits", 3000),
            ],
        )
        store.mark(HOSTILE, "mast:HST/product/a_x1d.fits", ProductState.DONE)
        store.mark(HOSTILE, "mast:HST/product/a_flt.fits", ProductState.FAILED, bytes_done=500)
        store.set_request_state(HOSTILE, RequestState.INCOMPLETE, HOSTILE_ERROR)
    return config


def listening(config: Config, listen: str = "127.0.0.1:0") -> Config:
    return dataclasses.replace(config, status=StatusConfig(listen=listen))


@pytest.fixture
async def url(mirrored: Config) -> AsyncIterator[str]:
    async with serving_status(listening(mirrored)) as base:
        assert base is not None
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class RequestsTable(HTMLParser):
    """The rows of ``<table id="requests">``: each row's cells as text, by request name."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False
        self.rows: dict[str, list[str]] = {}
        self.progress: dict[str, tuple[str, str]] = {}
        self.tags: list[str] = []
        self._in_table = False
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attr = dict(attrs)
        if tag == "table" and attr.get("id") == "requests":
            self.found = self._in_table = True
        elif self._in_table and tag == "tr" and attr.get("data-request") is not None:
            self._row = attr["data-request"]
            self.rows[self._row or ""] = []
        elif self._row is not None and tag == "td":
            self.rows[self._row].append("")
        elif self._row is not None and tag == "progress":
            self.progress[self._row] = (attr.get("value") or "", attr.get("max") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self.rows[self._row]:
            self.rows[self._row][-1] += data


def parse_page(text: str) -> RequestsTable:
    table = RequestsTable()
    table.feed(text)
    table.close()
    return table


def expected(config: Config, name: str | None = None) -> dict[str, object]:
    with Store.open_readonly(config.paths.database) as store:
        summaries = store.summaries(name)
        products = store.products(name) if name is not None else None
        resync = config.schedule.resync_every
        return status_document(summaries, products, resync_every=resync)


# -- JSON ----------------------------------------------------------------------------------


async def test_status_json_is_status_document_of_the_same_store(
    mirrored: Config, url: str, http: aiohttp.ClientSession
):
    async with http.get(url + "status.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        doc = await response.json()
    assert doc == expected(mirrored)
    [tutorial] = [r for r in doc["requests"] if r["name"] == "7291"]
    assert tutorial["state"] == "done"
    assert tutorial["products"]["done"] == tutorial["products"]["total"] == 6
    assert tutorial["bytes"] == {"total": TUTORIAL_BYTES, "done": TUTORIAL_BYTES}


async def test_request_json_carries_its_products(
    mirrored: Config, url: str, http: aiohttp.ClientSession
):
    async with http.get(url + "status/7291.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc == expected(mirrored, "7291")
    assert [r["name"] for r in doc["requests"]] == ["7291"]
    assert len(doc["products"]) == 6
    assert {p["state"] for p in doc["products"]} == {"done"}


async def test_request_json_of_a_name_that_needs_quoting(
    mirrored: Config, url: str, http: aiohttp.ClientSession
):
    from urllib.parse import quote

    async with http.get(url + f"status/{quote(HOSTILE, safe='')}.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc == expected(mirrored, HOSTILE)
    assert doc["requests"][0]["last_error"] == HOSTILE_ERROR


async def test_unknown_request_is_404(url: str, http: aiohttp.ClientSession):
    async with http.get(url + "status/no-such-request.json") as response:
        assert response.status == 404
        assert "no-such-request" in (await response.json())["error"]
    async with http.get(url + "nothing-here") as response:
        assert response.status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["", "status.json", "status/7291.json", "metrics"])
async def test_only_get_and_head_are_served(
    url: str, http: aiohttp.ClientSession, method: str, path: str
):
    async with http.request(method, url + path) as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    async with http.head(url + path) as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_an_unreadable_database_is_503_and_metrics_say_down(
    tmp_path: Path, http: aiohttp.ClientSession
):
    config = listening(for_directory(tmp_path, server="http://127.0.0.1:9"))
    async with serving_status(config) as base:
        assert base is not None
        for path in ("", "status.json", "status/7291.json"):
            async with http.get(base + path) as response:
                assert response.status == 503
                # the reason goes to the service log, not to whoever asks
                assert str(tmp_path) not in await response.text()
        async with http.get(base + "metrics") as response:
            assert response.status == 200
            samples = parse_metrics(await response.text())
    assert samples == {("hstsync_up", ()): 0.0}


# -- Prometheus ----------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_parse_and_carry_the_stores_numbers(
    mirrored: Config, url: str, http: aiohttp.ClientSession
):
    async with http.get(url + "metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = parse_metrics(await response.text())

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("hstsync_up") == 1
    assert value("hstsync_request_products", request="7291", state="done") == 6
    assert value("hstsync_request_products", request="7291", state="failed") == 0
    assert value("hstsync_request_done_bytes", request="7291") == TUTORIAL_BYTES
    assert value("hstsync_request_size_bytes", request="7291") == TUTORIAL_BYTES
    assert value("hstsync_request_state", request="7291", state="done") == 1
    assert value("hstsync_request_state", request="7291", state="downloading") == 0

    assert value("hstsync_request_products", request=HOSTILE, state="done") == 1
    assert value("hstsync_request_products", request=HOSTILE, state="failed") == 1
    assert value("hstsync_request_products", request=HOSTILE, state="pending") == 0
    assert value("hstsync_request_done_bytes", request=HOSTILE) == 1500
    assert value("hstsync_request_size_bytes", request=HOSTILE) == 4000
    assert value("hstsync_request_state", request=HOSTILE, state="incomplete") == 1

    # every request state is a sample, exactly one of them 1, per request
    for name in ("7291", HOSTILE):
        states = {
            labels: v
            for (metric, labels), v in samples.items()
            if metric == "hstsync_request_state" and ("request", name) in labels
        }
        assert len(states) == len(RequestState)
        assert sorted(states.values()) == [0.0] * (len(RequestState) - 1) + [1.0]


async def test_metrics_are_read_at_scrape_time(
    mirrored: Config, url: str, http: aiohttp.ClientSession
):
    with Store(mirrored.paths.database) as store:
        store.retry(HOSTILE)
    async with http.get(url + "metrics") as response:
        samples = parse_metrics(await response.text())
    failed = (("request", HOSTILE), ("state", "failed"))
    pending = (("request", HOSTILE), ("state", "pending"))
    assert samples[("hstsync_request_products", failed)] == 0
    assert samples[("hstsync_request_products", pending)] == 1


# -- the page ------------------------------------------------------------------------------


async def test_page_lists_requests_with_progress(url: str, http: aiohttp.ClientSession):
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "script-src" not in response.headers["Content-Security-Policy"]
        text = await response.text()
    assert '<meta http-equiv="refresh" content="5">' in text
    table = parse_page(text)
    assert table.found
    name, state, files, collection, size, new_files, error = table.rows["7291"]
    assert (name, state, files, collection, error) == ("7291", "done", "6/6", "HST", "")
    assert new_files[:2] == "20"  # when the last pass brought new files (a timestamp)
    assert "50.18 MB / 50.18 MB" in size
    assert table.progress["7291"] == (str(TUTORIAL_BYTES), str(TUTORIAL_BYTES))
    assert table.progress[HOSTILE] == ("1500", "4000")
    assert "1/2 (1 failed)" in table.rows[HOSTILE][2]


async def test_page_escapes_request_names_and_errors(url: str, http: aiohttp.ClientSession):
    async with http.get(url) as response:
        text = await response.text()
    assert "<script" not in text and "<img" not in text
    assert "x&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;&amp;amp;" in text
    table = parse_page(text)
    assert "script" not in table.tags and "img" not in table.tags
    # what a browser shows is the text as stored, character for character
    name, state, *_, error = table.rows[HOSTILE]
    assert (name, state, error) == (HOSTILE, "incomplete", HOSTILE_ERROR)


async def test_page_with_no_requests_says_what_to_do(tmp_path: Path, http: aiohttp.ClientSession):
    config = listening(for_directory(tmp_path, server="http://127.0.0.1:9"))
    Store(config.paths.database).close()
    async with serving_status(config) as base, http.get(str(base)) as response:
        text = await response.text()
    table = parse_page(text)
    assert table.found and table.rows == {}
    assert "drop a manifest into the request directory" in text


# -- serving -------------------------------------------------------------------------------


async def test_off_unless_configured(mirrored: Config):
    async with serving_status(mirrored) as base:
        assert base is None


async def test_an_address_in_use_is_refused_naming_the_key(mirrored: Config):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"status\.listen: cannot listen on 127\.0\.0\.1:{port}"
        ):
            async with serving_status(listening(mirrored, f"127.0.0.1:{port}")):
                pass


async def test_ipv6_loopback(mirrored: Config, http: aiohttp.ClientSession):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        async with serving_status(listening(mirrored, "[::1]:0")) as base:
            assert base is not None and base.startswith("http://[::1]:")
            async with http.get(base + "status.json") as response:
                assert (await response.json()) == expected(mirrored)
    except ConfigError as exc:
        pytest.skip(f"::1 cannot be bound here: {exc}")


async def test_the_server_is_gone_after_the_block(mirrored: Config, http: aiohttp.ClientSession):
    async with serving_status(listening(mirrored)) as base:
        assert base is not None
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(base + "status.json"):
            pass


async def test_running_daemon_serves_status(tmp_path: Path, emulator: Emulator):
    (tmp_path / "requests").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{emulator.url}"\n'
        "[download]\nbackoff = 0.05\nbackoff_max = 0.5\ntimeout = 10\n"
        '[status]\nlisten = "127.0.0.1:0"\n'
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hstsync", "run", "--config", str(config)),
            stdout=sink,
            stderr=sink,
            env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
        )
    try:
        found = await eventually(
            lambda: re.search(r"status endpoint on (http://\S+/)", log.read_text()), proc, log
        )
        base = found.group(1)
        tmp = tmp_path / "requests" / "7291.toml.tmp"
        tmp.write_text(TUTORIAL_MANIFEST)
        tmp.rename(tmp_path / "requests" / "7291.toml")
        async with aiohttp.ClientSession() as http:

            async def state() -> str | None:
                async with http.get(base + "status.json") as response:
                    assert response.status == 200
                    requests = (await response.json())["requests"]
                return requests[0]["state"] if requests else None

            for _ in range(600):
                if await state() == "done":
                    break
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"7291 never done\n{log.read_text()[-3000:]}")
            async with http.get(base + "status/7291.json") as response:
                doc = await response.json()
            assert doc["requests"][0]["bytes"] == {"total": TUTORIAL_BYTES, "done": TUTORIAL_BYTES}
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0, log.read_text()
            with pytest.raises(aiohttp.ClientConnectionError):
                await state()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def eventually(
    probe: Callable[[], T | None], proc: asyncio.subprocess.Process, log: Path
) -> T:
    for _ in range(300):
        found = probe()
        if found:
            return found
        assert proc.returncode is None, log.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out\n{log.read_text()[-3000:]}")


# -- in a real browser ---------------------------------------------------------------------


def chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


async def test_headless_chromium_renders_the_requests_table(tmp_path: Path, url: str):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    # The page is served on this test's loop; the browser runs as a child process
    # awaited without blocking that loop, so it can be answered.
    proc = await asyncio.create_subprocess_exec(
        browser,
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace to sandbox with
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    dom = out.decode("utf-8", "replace")
    assert proc.returncode == 0, err.decode("utf-8", "replace")[-3000:]
    table = parse_page(dom)
    assert table.found, dom[:2000]
    assert table.rows["7291"][:3] == ["7291", "done", "6/6"]
    assert table.progress["7291"] == (str(TUTORIAL_BYTES), str(TUTORIAL_BYTES))
    # the hostile name is text in the rendered DOM, never an element
    assert table.rows[HOSTILE][0] == HOSTILE
    assert "script" not in table.tags and "img" not in table.tags
