"""The daemon as users run it: a real ``hstsync run`` process, the emulator, real files.

Each test starts the daemon with ``python -m hstsync run``, drops manifests into its
request directory the way people and scripts do, and watches the database and the
mirror from outside, as ``hstsync status`` would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from helpers import (
    assert_tree_identical,
    daemon,
    drop,
    notify_socket,
    request_state,
    until,
    until_done,
    until_transferring,
    write_config,
)
from tutorial import TUTORIAL_BYTES, TUTORIAL_NAMES
from watchfiles import Change

from hstsync.archive.manifest import parse_manifest_bytes, write_manifest
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import load_config
from hstsync.emulator import Emulator, default_catalogue
from hstsync.errors import StoreError
from hstsync.model import ProductState, RequestState
from hstsync.service.daemon.lifecycle import Daemon as Service
from hstsync.service.daemon.schedule import renamed_in, settled
from hstsync.store.db import Store
from hstsync.transfer import held_bytes


async def test_manifest_dropped_into_running_daemon_is_mirrored(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        d.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(d.proc.wait(), 10) == 0
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


async def test_manifest_half_written_is_not_taken(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        # A writer that ignores the .tmp convention: the first half is already valid
        # TOML naming the whole program; the daemon must wait for the rest.
        path = tmp_path / "requests" / "7291.toml"
        half = TUTORIAL_MANIFEST.index("[criteria]")
        with path.open("w") as f:
            f.write(TUTORIAL_MANIFEST[:half])
            f.flush()
            await asyncio.sleep(0.3)
            f.write(TUTORIAL_MANIFEST[half:])
        # A .tmp file is never a manifest, however long it sits there.
        (tmp_path / "requests" / "other.toml.tmp").write_text("proposal_id = 7291\n")
        await until_done(tmp_path, d)
        await asyncio.sleep(1.0)
        assert request_state(tmp_path, "other") is None
        assert request_state(tmp_path, "other.toml") is None
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        assert len(store.products("7291")) == 6
    # the whole program (no obs_id criterion) was never asked for
    invokes = [r for r in emulator.requests if r.path == "/api/v0/invoke"]
    assert invokes
    products_calls = [r for r in invokes if "24454469" in r.body]
    assert products_calls == []


def test_settled_tells_a_finished_manifest_from_one_being_written(tmp_path: Path):
    path = tmp_path / "m.toml"
    path.write_text("proposal_id = 7291\n")
    written = path.stat()
    now = time.time()
    # written in place: read only once it has been still for the settle delay
    assert not settled(written, now, settle=0.5, steady=True)
    assert settled(written, now + 1, settle=0.5, steady=True)
    assert not settled(written, now + 1, settle=0.5, steady=False)
    # its times set after the write, as a rename into place, cp -p or touch leave them
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns - 10**9))
    assert settled(path.stat(), now, settle=0.5, steady=False)
    # written to again in place: both times move together, and it must settle again
    with path.open("a") as f:
        f.write("# more\n")
    assert not settled(path.stat(), time.time(), settle=0.5, steady=False)


def test_renames_into_place_are_told_from_the_file_events():
    d = "/srv/requests/"
    # NAME.toml.tmp renamed to NAME.toml (the convention), as watchfiles reports it
    batch = {
        (Change.added, d + "a.toml.tmp"),
        (Change.deleted, d + "a.toml.tmp"),
        (Change.added, d + "a.toml"),
    }
    assert renamed_in(batch) == {"a.toml"}
    # rsync's .NAME.XXXXXX
    assert renamed_in({(Change.deleted, d + ".b.json.Xy12zQ"), (Change.added, d + "b.json")}) == {
        "b.json"
    }
    # written in place; another file's temporary; a temporary that is not a manifest
    assert renamed_in({(Change.added, d + "c.toml"), (Change.modified, d + "c.toml")}) == set()
    assert renamed_in({(Change.deleted, d + "x.toml.tmp"), (Change.added, d + "c.toml")}) == set()
    assert renamed_in({(Change.deleted, d + "n.txt.tmp"), (Change.added, d + "n.txt")}) == set()


async def test_a_manifest_renamed_into_place_is_taken_without_settling(
    tmp_path: Path, emulator: Emulator
):
    # A settle delay of an hour: only a manifest known to be finished can be taken.
    config = load_config(write_config(tmp_path, emulator.url))
    service = Service(config, settle=3600)
    running = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        (tmp_path / "requests" / "in-place.toml").write_text(TUTORIAL_MANIFEST)
        # how `hstsync add` writes: NAME.toml.tmp, renamed into place
        request = parse_manifest_bytes("7291", TUTORIAL_MANIFEST.encode(), ".toml")
        write_manifest(config.paths.requests, request)
        await until(
            lambda: request_state(tmp_path, "7291") is RequestState.DONE,
            what="the renamed manifest mirrored",
        )
        assert request_state(tmp_path, "in-place") is None
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 30) == 0
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


async def test_daemon_loads_astroquery_before_the_first_request(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config, verbose=True) as d:
        await until(lambda: "astroquery loaded" in d.output(), what="the warm-up", daemon=d)
    assert emulator.requests == []  # loading asks nothing of the archive


async def test_sigkill_mid_transfer_then_restart_resumes_byte_identical(tmp_path: Path):
    # 3 MB/s per connection: the 14 MB files take about 5 s, time enough to kill.
    async with Emulator(default_catalogue(), rate=3e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until_transferring(tmp_path, d)
            d.proc.kill()
            await d.proc.wait()
        sent_before = emulator.bytes_sent
        assert sent_before < TUTORIAL_BYTES
        assert request_state(tmp_path, "7291") in {
            RequestState.DOWNLOADING,
            RequestState.RESOLVING,
        }

        async with daemon(tmp_path, config) as d:
            await until_done(tmp_path, d, what="7291 to finish after restart")
        fetched_after_restart = emulator.bytes_sent - sent_before
        assert fetched_after_restart < TUTORIAL_BYTES
        ranged = [r for r in emulator.requests if "range" in {k.lower() for k in r.headers}]
        assert ranged, "the restart resumed nothing"
        assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)


async def test_sigterm_exits_cleanly_with_database_consistent(tmp_path: Path):
    async with Emulator(default_catalogue(), rate=3e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until_transferring(tmp_path, d)
            d.proc.send_signal(signal.SIGTERM)
            # within the units' TimeoutStopSec (30 s), however loaded the machine
            assert await asyncio.wait_for(d.proc.wait(), 30) == 0, d.output()

    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        request = store.get_request("7291")
        assert request is not None and request.state is RequestState.QUEUED
        for row in store.products("7291"):
            assert row.state in {ProductState.PENDING, ProductState.DONE}
            path = tmp_path / "mirror" / row.product.relpath()
            if row.state is ProductState.DONE:
                assert path.stat().st_size == row.product.size
            else:
                # the bytes the part holds (a segmented part is preallocated: its
                # record says which of them are in place)
                assert row.bytes_done == held_bytes(path)
                assert not path.exists()


async def test_resync_fetches_exactly_the_new_product(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url, resync_every="2s")
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        before = len(emulator.requests)
        emulator.catalogue.add_product(
            "o58701010",
            "o58701010_sx1.fits",
            2880 * 40,
            product_type="SCIENCE",
            calib_level=2,
        )

        def has_new() -> bool:
            try:
                with Store.open_readonly(tmp_path / "hstsync.db") as store:
                    rows = store.products("7291")
            except StoreError:
                return False
            return any(
                r.product.filename == "o58701010_sx1.fits" and r.state is ProductState.DONE
                for r in rows
            )

        await until(has_new, what="the new product to arrive", daemon=d)
    fetched = [
        r.query
        for r in emulator.requests[before:]
        if r.method == "GET" and r.path == "/api/v0.1/Download/file"
    ]
    assert fetched == [q for q in fetched if "o58701010_sx1.fits" in q]
    assert len(fetched) == 1
    assert_tree_identical(tmp_path, emulator, [*TUTORIAL_NAMES, "o58701010_sx1.fits"])


async def test_editing_a_manifest_replans_its_request(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        drop(
            tmp_path,
            "7291.toml",
            TUTORIAL_MANIFEST.replace('"o58701010", "o58701030"', '"o58701020"'),
        )

        def listed() -> dict[str, set[str]]:
            with Store.open_readonly(tmp_path / "hstsync.db") as store:
                states: dict[str, set[str]] = {}
                for row in store.products("7291"):
                    states.setdefault(row.state, set()).add(row.product.obs_id)
                return states

        def replanned() -> bool:
            if request_state(tmp_path, "7291") is not RequestState.DONE:
                return False
            return listed().get(ProductState.DONE) == {"o58701020"}

        await until(replanned, what="the edited request to be re-planned", daemon=d)
    # files of the earlier selection stay, withdrawn: a mirror does not delete what it
    # fetched, and says they are no longer selected
    assert listed()[ProductState.WITHDRAWN] == {"o58701010", "o58701030"}
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)
    assert_tree_identical(
        tmp_path, emulator, [f"o58701020_{kind}.fits" for kind in ("x1d", "x2d", "flt")]
    )


async def test_removing_a_manifest_stops_its_request(tmp_path: Path):
    async with Emulator(default_catalogue(), rate=2e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        async with daemon(tmp_path, config) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until(
                lambda: request_state(tmp_path, "7291") is RequestState.DOWNLOADING,
                what="transfers to start",
                daemon=d,
            )
            (tmp_path / "requests" / "7291.toml").unlink()
            await until(
                lambda: request_state(tmp_path, "7291") is None,
                what="the request to stop",
                daemon=d,
            )
            sent = emulator.bytes_sent
            await asyncio.sleep(1.0)
            # nothing more is fetched for a stopped request
            assert emulator.bytes_sent - sent < 100_000
            assert "Traceback" not in d.output()


async def test_daemon_tells_systemd_it_is_ready_and_stopping(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    with notify_socket(tmp_path) as notify:
        async with daemon(tmp_path, config, env={"NOTIFY_SOCKET": notify.address}) as d:
            assert b"READY=1" in await notify.message()
            d.proc.send_signal(signal.SIGTERM)
            assert b"STOPPING=1" in await notify.message()
            assert await asyncio.wait_for(d.proc.wait(), 10) == 0


async def test_a_second_run_on_the_same_database_is_refused(tmp_path: Path, emulator: Emulator):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hstsync",
            "run",
            "--once",
            "--config",
            str(config),
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2
        assert f"pid {d.proc.pid}" in err.decode()
        assert "Traceback" not in err.decode()


async def test_retry_wakes_a_running_daemon(tmp_path: Path, emulator: Emulator):
    from hstsync.emulator import Fault, FaultKind

    config = write_config(tmp_path, emulator.url)
    emulator.faults.add(Fault(FaultKind.STATUS, match="o58701030_x1d.fits", status=404, times=None))
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until(
            lambda: request_state(tmp_path, "7291") is RequestState.INCOMPLETE,
            what="the 404 to leave 7291 incomplete",
            daemon=d,
        )
        emulator.faults.clear()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hstsync", "retry", "7291", "--config", str(config),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert b"1 product(s) put back" in out
        # the daemon rescans on its own only every 30 s; the retry's nudge is what
        # gets the file fetched well before that
        await until_done(tmp_path, d, what="the retried file", timeout=15)
    assert_tree_identical(tmp_path, emulator, TUTORIAL_NAMES)
