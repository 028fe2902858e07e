"""The service when its surroundings misbehave: planted links, a vanished request
directory, a full or read-only disk, signals at awkward moments, systemd's watchdog.

Real ``hstsync run`` processes against the emulator (or a portal that never answers),
watched from outside as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from helpers import (
    assert_tree_identical,
    daemon,
    drop,
    held_under,
    notify_socket,
    request_state,
    run_hstsync,
    tmpfs,
    until,
    until_done,
    until_transferring,
    write_config,
)
from tutorial import TUTORIAL_NAMES

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import load_config
from hstsync.emulator import Emulator, Fault, FaultKind, default_catalogue
from hstsync.errors import StoreError
from hstsync.model import ProductState, RequestState
from hstsync.service.daemon import daemon_status
from hstsync.store.db import Store

ENV = dict(os.environ, HSTSYNC_NO_KEYRING="1")


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str]:
    """``python -m hstsync ARGS``: its exit code and its stderr."""
    code, _, err = await run_hstsync(*args, env=ENV, timeout=timeout)
    return code, err


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- 1. set-aside manifests and planted links ------------------------------------------


async def test_a_note_planted_as_a_link_to_the_database_is_never_written_through(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0  # the database
    db = tmp_path / "hstsync.db"
    before = db.read_bytes()
    failed = tmp_path / "requests" / "failed"
    failed.mkdir()
    (failed / "bad.error.txt").symlink_to(db)
    (failed / "bad.toml").symlink_to(db)  # the move must replace this link, not follow it
    drop(tmp_path, "bad.toml", "proposal_id = [[[\n")
    code, err = await run_cli("run", "--once", "--config", str(config))
    assert code == 1 and "Traceback" not in err
    assert not (failed / "bad.error.txt").is_symlink()
    assert "bad.toml was not taken" in (failed / "bad.error.txt").read_text()
    assert not (failed / "bad.toml").is_symlink()
    assert (failed / "bad.toml").read_text() == "proposal_id = [[[\n"
    after = db.read_bytes()
    assert after[:16] == before[:16] == b"SQLite format 3\0"
    assert b"was not taken" not in after
    assert integrity(db) == "ok"
    with Store.open_readonly(db) as store:
        row = store.get_request("bad")
        assert row is not None and row.state is RequestState.INVALID


async def test_a_failed_directory_that_is_a_link_is_refused_and_the_manifest_stays(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "requests" / "failed").symlink_to(elsewhere)
    drop(tmp_path, "bad.toml", "proposal_id = [[[\n")
    code, err = await run_cli("run", "--once", "--config", str(config))
    assert code == 1 and "Traceback" not in err
    assert "is not a directory" in err
    assert list(elsewhere.iterdir()) == []
    assert (tmp_path / "requests" / "bad.toml").exists()
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        row = store.get_request("bad")
    assert row is not None and row.state is RequestState.INVALID
    assert row.last_error is not None and "not moved aside" in row.last_error


async def test_a_stale_error_note_is_removed_once_the_fixed_manifest_is_taken(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    drop(tmp_path, "7291.toml", "proposal_id = [[[\n")
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 1
    note = tmp_path / "requests" / "failed" / "7291.error.txt"
    assert note.exists()
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0
    assert not note.exists()


# -- 2. requests that share files -------------------------------------------------------


async def test_removing_one_of_two_requests_sharing_files_lets_the_other_finish(tmp_path: Path):
    async with Emulator(default_catalogue(), rate=3e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "first.toml", TUTORIAL_MANIFEST)
            await until_transferring(tmp_path, d, held=1_000_000)
            drop(tmp_path, "second.toml", TUTORIAL_MANIFEST)
            await until(
                lambda: request_state(tmp_path, "second") is RequestState.DOWNLOADING,
                what="the second request to wait on the first one's transfers",
                daemon=d,
            )
            (tmp_path / "requests" / "first.toml").unlink()
            await until(
                lambda: (
                    request_state(tmp_path, "second")
                    in {RequestState.DONE, RequestState.INCOMPLETE}
                ),
                what="the second request to end",
                daemon=d,
            )
            assert request_state(tmp_path, "second") is RequestState.DONE, d.output()[-2000:]
            assert request_state(tmp_path, "first") is None
            assert "Traceback" not in d.output()
        assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


def leave_unfetched(root: Path, emulator: Emulator, name: str) -> None:
    """What the shared-transfer bug left behind: a request ``incomplete`` with a
    product ``pending`` that no pass would take before the next re-sync."""
    with Store(root / "hstsync.db") as store:
        row = next(r for r in store.products(name) if r.product.filename == TUTORIAL_NAMES[0])
        (root / "mirror" / row.product.relpath()).unlink()
        store.mark(name, row.product.data_uri, ProductState.PENDING, bytes_done=0)
        store.set_request_state(name, RequestState.INCOMPLETE, "1 not fetched", resolved=True)


async def test_a_restart_fetches_products_a_pass_left_unfetched(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0
    leave_unfetched(tmp_path, emulator, "7291")
    async with daemon(tmp_path, config) as d:
        await until_done(tmp_path, d, what="the unfetched product after a restart", timeout=20)
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


async def test_retry_puts_back_products_a_pass_left_unfetched(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url, resync_every="24h")
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    async with daemon(tmp_path, config) as d:
        await until_done(tmp_path, d)
        leave_unfetched(tmp_path, emulator, "7291")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hstsync", "retry", "7291", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, env=ENV,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert b"1 product(s) put back" in out
        await until_done(tmp_path, d, what="the retried product", timeout=20)
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


# -- 3. the request directory -----------------------------------------------------------


async def test_a_missing_request_directory_is_refused_not_made_empty(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0
    shutil.rmtree(tmp_path / "requests")  # the share is not mounted
    for args in (["run", "--once"], ["run"]):
        code, err = await run_cli(*args, "--config", str(config))
        assert code == 2, err
        assert "Traceback" not in err
        line = err.strip().splitlines()[-1]
        assert str(tmp_path / "requests") in line and "[paths]" in line
        assert not (tmp_path / "requests").exists()
    assert request_state(tmp_path, "7291") is RequestState.DONE  # not forgotten


async def test_a_fresh_configuration_makes_its_request_directory(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests").rmdir()
    assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0
    assert (tmp_path / "requests").is_dir()


async def test_a_request_directory_vanishing_under_the_daemon_keeps_its_requests(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        requests = tmp_path / "requests"
        requests.rename(tmp_path / "unmounted")
        await until(lambda: "cannot be read" in d.output(), what="the daemon to notice", daemon=d)
        assert request_state(tmp_path, "7291") is RequestState.DONE
        (tmp_path / "unmounted").rename(requests)
        await until(lambda: "is back" in d.output(), what="the directory to be seen back", daemon=d)
        assert request_state(tmp_path, "7291") is RequestState.DONE
        # and it is watched again: a new manifest is taken
        drop(tmp_path, "again.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d, "again", what="a manifest dropped after the outage")
        assert d.output().count("cannot be read") == 1  # said once, not every rescan
        assert "Traceback" not in d.output()


# -- 4. a full disk, a read-only database directory ---------------------------------------


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory``; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * (1 << 16)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def config_on(root: Path, fs: Path, server: str) -> Path:
    (root / "requests").mkdir(exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        f'[paths]\nrequests = "requests"\nmirror = "{fs}/mirror"\ndatabase = "{fs}/hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        "[download]\nbackoff = 0.05\nbackoff_max = 0.5\ntimeout = 10\n"
    )
    return config


def state_in(db: Path, name: str) -> RequestState | None:
    try:
        with Store.open_readonly(db) as store:
            row = store.get_request(name)
    except StoreError:
        return None
    return row.state if row else None


async def test_a_full_disk_under_the_daemon_is_an_error_and_a_pause_not_a_crash(
    tmp_path: Path, emulator: Emulator
):
    with tmpfs(tmp_path / "fs", "128m") as fs:
        config = config_on(tmp_path, fs, emulator.url)
        db = fs / "hstsync.db"
        async with daemon(tmp_path, config) as d:
            filler = fill(fs)
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until(
                lambda: "database or disk is full" in d.output(),
                what="the daemon to meet the full disk",
                daemon=d,
            )
            await asyncio.sleep(1.0)
            assert d.proc.returncode is None
            filler.unlink()
            await until(
                lambda: state_in(db, "7291") is RequestState.DONE,
                what="7291 to be mirrored once there is room",
                daemon=d,
            )
            assert "Traceback" not in d.output()
        assert integrity(db) == "ok"


async def test_a_full_disk_at_the_start_of_run_once_is_one_line_and_exit_1(
    tmp_path: Path, emulator: Emulator
):
    with tmpfs(tmp_path / "fs", "128m") as fs:
        config = config_on(tmp_path, fs, emulator.url)
        assert (await run_cli("run", "--once", "--config", str(config)))[0] == 0
        filler = fill(fs)
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        code, err = await run_cli("run", "--once", "--config", str(config))
        assert code == 1, err
        assert "Traceback" not in err, err
        assert "disk is full" in err.strip().splitlines()[-1]
        filler.unlink()
        assert integrity(fs / "hstsync.db") == "ok"
        code, err = await run_cli("run", "--once", "--config", str(config))
        assert code == 0, err


async def test_a_disk_filling_up_during_run_once_ends_it_with_exit_1_and_it_resumes(
    tmp_path: Path,
):
    async with Emulator(default_catalogue(), rate=3e6) as emulator:
        with tmpfs(tmp_path / "fs", "256m") as fs:
            config = config_on(tmp_path, fs, emulator.url)
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hstsync", "run", "--once", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV,
            )  # fmt: skip
            await until(lambda: held_under(fs / "mirror") > 1_000_000, what="transfers")
            filler = fill(fs)  # the disk fills up under the transfers and the database
            _, raw = await asyncio.wait_for(proc.communicate(), 60)
            err = raw.decode(errors="replace")
            assert proc.returncode == 1, err
            assert "Traceback" not in err, err
            filler.unlink()
            assert integrity(fs / "hstsync.db") == "ok"
            assert (await run_cli("retry", "--config", str(config)))[0] == 0
            code, err = await run_cli("run", "--once", "--config", str(config))
            assert code == 0, err
            assert state_in(fs / "hstsync.db", "7291") is RequestState.DONE


async def test_a_read_only_database_directory_is_one_line_and_exit_2(
    tmp_path: Path, emulator: Emulator
):
    with tmpfs(tmp_path / "fs", "1m", "ro") as fs:
        config = config_on(tmp_path, fs, emulator.url)
        (tmp_path / "mirror").mkdir()
        text = config.read_text().replace(f"{fs}/mirror", str(tmp_path / "mirror"))
        config.write_text(text)
        for args in (["run", "--once"], ["run"]):
            code, err = await run_cli(*args, "--config", str(config))
            assert code == 2, err
            assert "Traceback" not in err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Read-only file system" in lines[0], err


# -- 5. signals -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_portal() -> AsyncIterator[tuple[str, list[int]]]:
    """A MAST server that accepts every connection and never answers."""
    connections: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        for writer in writers:
            writer.close()
        server.close()


@pytest.mark.parametrize("once", [False, True], ids=["daemon", "once"])
async def test_a_signal_ends_the_run_while_a_lookup_hangs(tmp_path: Path, once: bool):
    async with silent_portal() as (server, connections):
        config = write_config(tmp_path, server)
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        log = tmp_path / "run.log"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hstsync", "run", *(["--once"] if once else []),
                "--config", str(config), stdout=sink, stderr=sink, env=ENV,
            )  # fmt: skip
        try:
            await until(lambda: bool(connections), what="the lookup to reach the portal")
            await asyncio.sleep(0.3)  # astroquery is now blocked reading the reply
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output = log.read_text()
        assert code == (1 if once else 0), output
        assert "Traceback" not in output
    assert request_state(tmp_path, "7291") is RequestState.QUEUED


async def test_a_second_signal_cuts_the_stop_short_but_still_closes_the_store(tmp_path: Path):
    # A lookup hung in astroquery is what a stop used to wait on forever; the second
    # signal then ended the process with os._exit, the store left open.
    async with silent_portal() as (server, connections):
        config = write_config(tmp_path, server)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until(lambda: bool(connections), what="the lookup to reach the portal")
            await asyncio.sleep(0.3)
            d.proc.send_signal(signal.SIGTERM)
            await until(lambda: "stopping" in d.output(), what="the stop to begin")
            if d.proc.returncode is None:
                d.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(d.proc.wait(), 30)
            # 1: cut short by the second signal; 0 or killed by it: the stop had
            # already finished (the store closed) when it came
            assert code in (0, 1, -signal.SIGTERM), d.output()
            assert "Traceback" not in d.output()
            assert "stopped" in d.output()
    # closed by its last connection: SQLite checkpoints and removes the WAL
    assert not (tmp_path / "hstsync.db-wal").exists()
    assert integrity(tmp_path / "hstsync.db") == "ok"
    assert request_state(tmp_path, "7291") is RequestState.QUEUED


async def test_sighup_stops_the_daemon_like_sigterm(tmp_path: Path):
    async with Emulator(default_catalogue(), rate=3e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until_transferring(tmp_path, d, held=1_000_000)
            d.proc.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(d.proc.wait(), 30) == 0, d.output()
    assert not (tmp_path / "hstsync.db-wal").exists()
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        assert {row.state for row in store.products("7291")} <= {
            ProductState.PENDING,
            ProductState.DONE,
        }


# -- 6. systemd's watchdog and the heartbeat ------------------------------------------------


async def test_the_daemon_feeds_systemds_watchdog(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    with notify_socket(tmp_path) as notify:
        env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}
        async with daemon(tmp_path, config, env=env):
            pings = 0
            while pings < 3:
                pings += b"WATCHDOG=1" in await notify.message()


async def test_daemon_status_tells_a_running_daemon_and_its_last_heartbeat(
    tmp_path: Path, emulator: Emulator
):
    path = write_config(tmp_path, emulator.url)
    config = load_config(path)
    assert daemon_status(config) == (False, None, None)
    async with daemon(tmp_path, path) as d:
        running, pid, last = daemon_status(config)
        assert running and pid == d.proc.pid
        assert last is not None and last <= time.time()
        # what a person and a script read
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hstsync", "status", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert f"daemon: running (pid {d.proc.pid}, last heartbeat" in shown.stdout
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hstsync", "status", "--json", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(shown.stdout)["daemon"]["pid"] == d.proc.pid
        d.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(d.proc.wait(), 10) == 0
    running, pid, last = daemon_status(config)
    assert not running and pid is None and last is not None


# -- kill -9 between a file's durability and its row's mark --------------------------------


async def test_kill_9_between_a_durable_file_and_its_mark_leaves_it_found_and_recorded(
    tmp_path: Path,
) -> None:
    """Done marks are written in batches, after each file's bytes and name are durable:
    a kill can lose a mark, never record done for bytes that are not there, and the
    next run finds the file present and records it without fetching it again."""
    catalogue = default_catalogue()
    added = catalogue.add_program(90002, files=6, size=2880 * 11)
    async with Emulator(catalogue) as emu:
        config = write_config(tmp_path, emu.url)
        drop(tmp_path, "90002.toml", "proposal_id = 90002\n")

        def rows() -> list[Any]:
            try:
                with Store.open_readonly(tmp_path / "hstsync.db") as store:
                    return list(store.products("90002"))
            except StoreError:
                return []

        def present_not_done() -> list[Any]:
            return [
                r
                for r in rows()
                if r.state is not ProductState.DONE
                and (tmp_path / "mirror" / r.product.relpath()).is_file()
            ]

        # one file stalls: its request stays under way, so the others' marks wait
        stalled = added[-1].filename
        emu.faults.add(Fault(FaultKind.STALL, match=stalled, after=100, delay=60, times=None))
        async with daemon(tmp_path, config) as d:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not present_not_done():  # a file durable, its mark not written yet
                assert loop.time() < deadline, d.output()[-3000:]
                await asyncio.sleep(0.005)
            d.proc.kill()
            await d.proc.wait()

        products = rows()
        present = {
            r.product.filename
            for r in products
            if (tmp_path / "mirror" / r.product.relpath()).is_file()
        }
        for row in products:  # never done without its bytes
            if row.state is ProductState.DONE:
                path = tmp_path / "mirror" / row.product.relpath()
                assert path.read_bytes() == emu.body(row.product.data_uri)
        assert present and stalled not in present

        emu.faults.clear()
        seen = len(emu.requests)
        async with daemon(tmp_path, config) as d:
            await until_done(tmp_path, d, "90002", "90002 to be mirrored")
        fetched = {
            parse_qs(r.query).get("uri", [""])[0].rsplit("/", 1)[-1] for r in emu.requests[seen:]
        }
        assert not present & fetched  # found present, recorded, not fetched again
        assert all(r.state is ProductState.DONE for r in rows())
        for row in rows():
            assert (tmp_path / "mirror" / row.product.relpath()).read_bytes() == emu.body(
                row.product.data_uri
            )
