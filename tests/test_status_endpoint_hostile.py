"""The status endpoint against clients that do not play fair: half-sent requests by the
hundred (slow loris), more connections than it serves, a process out of descriptors, a
browser page whose domain was re-pointed at this machine (DNS rebinding).

The endpoint's own server on a real socket (``serving_status``, as the daemon runs it),
and real ``hstsync run`` processes under a low descriptor limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from helpers import Daemon, drop, until, until_done

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, StatusConfig, for_directory, host_header_allowed
from hstsync.emulator import Emulator
from hstsync.service.daemon import serving_status
from hstsync.store import Store

HALF_A_REQUEST = b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
def config(tmp_path: Path) -> Config:
    base = for_directory(tmp_path, server="http://127.0.0.1:9")
    with Store(base.paths.database):
        pass  # an empty database to read
    return dataclasses.replace(base, status=StatusConfig(listen="127.0.0.1:0"))


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (TimeoutError, ConnectionError):
        return False


def port_of(url: str) -> int:
    found = re.search(r":(\d+)/$", url)
    assert found is not None
    return int(found.group(1))


# -- slow clients, many clients ---------------------------------------------------------


async def test_a_client_that_never_finishes_its_headers_is_cut_off(config: Config):
    async with serving_status(config, header_seconds=0.5) as url:
        assert url is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        writer.write(HALF_A_REQUEST)
        await writer.drain()
        async with aiohttp.ClientSession() as http, http.get(url + "status.json") as response:
            assert response.status == 200  # others are served meanwhile
        assert await closed_by_server(reader, within=5)
        writer.close()


async def test_connections_beyond_the_cap_are_closed_at_once_and_the_page_answers_after(
    config: Config,
):
    async with serving_status(config, max_connections=3) as url:
        assert url is not None
        held = [await asyncio.open_connection("127.0.0.1", port_of(url)) for _ in range(3)]
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        assert await closed_by_server(reader, within=2)  # not left waiting in the backlog
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http, http.get(url + "status.json") as response:
            assert response.status == 200


# -- DNS rebinding ------------------------------------------------------------------------


async def test_a_request_addressed_to_another_name_is_refused(config: Config):
    async with serving_status(config) as url, aiohttp.ClientSession() as http:
        assert url is not None
        port = port_of(url)
        for host, status in [
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            ("127.0.0.1", 200),
            (f"attacker.example:{port}", 421),  # a rebound name
            (f"attacker.example.:{port}", 421),
            (f"127.0.0.1.attacker.example:{port}", 421),
        ]:
            async with http.get(url + "status.json", headers={"Host": host}) as response:
                assert response.status == status, host


def test_which_host_headers_address_the_status_endpoint():
    assert host_header_allowed("127.0.0.1:8470", "127.0.0.1")
    assert host_header_allowed("localhost:8470", "127.0.0.1")
    assert host_header_allowed("[::1]:8470", "::1")
    assert host_header_allowed("LOCALHOST", "::1")
    assert host_header_allowed("192.168.1.5:8470", "192.168.1.5")
    assert host_header_allowed("192.168.1.5:8470", "0.0.0.0")  # every address: any literal
    assert host_header_allowed("[fe80::1]:8470", "::")
    assert not host_header_allowed("192.168.1.6:8470", "192.168.1.5")
    assert not host_header_allowed("mirror.example.org:8470", "0.0.0.0")
    assert not host_header_allowed("evil.example:8470", "127.0.0.1")
    assert not host_header_allowed("", "127.0.0.1")


# -- a real daemon under a descriptor limit ---------------------------------------------------


@contextlib.asynccontextmanager
async def daemon_with_limit(
    root: Path, emulator: Emulator, soft: int, hard: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path, int]]:
    """``hstsync run`` with the status endpoint, started under ``ulimit -n`` soft/hard:
    the process, its log and the endpoint's port."""
    (root / "requests").mkdir()
    config = root / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{emulator.url}"\n'
        "[download]\nbackoff = 0.05\nbackoff_max = 0.5\ntimeout = 10\n"
        '[status]\nlisten = "127.0.0.1:0"\n'
    )
    log = root / "daemon.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hstsync", "run", "--config", str(config)),
            stdout=sink,
            stderr=sink,
            env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
            preexec_fn=limit,
        )
    try:
        await until(lambda: "watching" in log.read_text(), what="the daemon to start")
        found = re.search(r"status endpoint on (http://\S+/)", log.read_text())
        assert found is not None
        yield proc, log, port_of(found.group(1))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def half_sent(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections that each send half a request and then nothing."""
    writers = []
    for _ in range(count):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        except (TimeoutError, OSError):
            continue
        writer.write(HALF_A_REQUEST)
        writers.append(writer)
    return writers


async def test_hundreds_of_half_sent_requests_do_not_starve_the_daemon(
    tmp_path: Path, emulator: Emulator
):
    async with daemon_with_limit(tmp_path, emulator, soft=128, hard=1024) as (proc, log, port):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+1024\s+1024", limits), limits  # raised at start
        writers = await half_sent(port, 400)

        def descriptors_now() -> int:
            return len(os.listdir(f"/proc/{proc.pid}/fd"))

        # connections past the cap are accepted and closed at once: on a busy machine a
        # few may still be open the moment the last client connected
        for _ in range(50):
            descriptors = descriptors_now()
            if descriptors < 150:
                break
            await asyncio.sleep(0.1)
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, Daemon(proc, log))
        for writer in writers:
            writer.close()
    text = log.read_text()
    assert descriptors < 150, descriptors  # the cap, not one per client
    assert "Traceback" not in text
    assert len(text) < 20_000, text[-3000:]


async def test_out_of_descriptors_failed_accepts_are_one_line_not_a_traceback_each(
    tmp_path: Path, emulator: Emulator
):
    async with daemon_with_limit(tmp_path, emulator, soft=40, hard=40) as (proc, log, port):
        handle = Daemon(proc, log)
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, handle)
        writers = await half_sent(port, 80)
        await asyncio.sleep(4)  # asyncio retries a failed accept every second
        text = log.read_text()
        for writer in writers:
            writer.close()
        await asyncio.sleep(11)  # the half-sent requests time out; descriptors come back
        drop(tmp_path, "again.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, handle, "again", "again to be mirrored")
    assert "Traceback" not in text, text[-3000:]
    assert text.count("cannot accept connections") <= 1
