"""Looking requests up against an archive with real habits, through whole passes.

Twins on one path, hung and failing portal calls, retries and batches, the failed-
lookup schedule, the server's size recorded, and files already in the mirror checked
before they count. The emulator stands in for MAST; the clock is moved where a test
would otherwise wait minutes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from tutorial import TUTORIAL_FILES

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.model import ProductState, RequestState, relookup_delay
from hstsync.service.daemon import Daemon, run_once, wake
from hstsync.service.daemon import lifecycle as daemon_module
from hstsync.service.daemon.status import product_document
from hstsync.store.db import Store

HST = Path("mastDownload/HST")
X1D = "o58701010_x1d.fits"


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(
        tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.02, retries=0, timeout=5
    )
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    return cfg


def with_timeout(config: Config, seconds: float) -> Config:
    return replace(config, mast=replace(config.mast, timeout=seconds))


def downloads(emulator: Emulator, since: int = 0) -> list[str]:
    return [
        unquote_plus(r.query)
        for r in emulator.requests[since:]
        if r.method == "GET" and r.path.endswith("/Download/file")
    ]


def invokes(emulator: Emulator, service: str) -> int:
    return sum(1 for r in emulator.requests if service in unquote_plus(r.body))


def request_row(config: Config, name: str = "7291"):
    with Store.open_readonly(config.paths.database) as store:
        return store.get_request(name)


def product_rows(config: Config, name: str = "7291"):
    with Store.open_readonly(config.paths.database) as store:
        return {row.product.data_uri: row for row in store.products(name)}


# -- twins -----------------------------------------------------------------------------


async def test_twins_on_one_path_are_fetched_once_and_the_other_fails_visibly(
    config: Config, emulator: Emulator
):
    owner = f"mast:HST/product/{X1D}"
    twin = f"mast:HST/product/o58701010/{X1D};reprocessed"
    emulator.catalogue.add_product("o58701010", X1D, 5760, data_uri=twin)
    emulator.faults.add(Fault(FaultKind.STATUS, match=X1D, status=404, times=None))

    for _ in range(2):  # the same outcome every pass: no content swapping
        await run_once(config)
        rows = product_rows(config)
        assert rows[twin].state is ProductState.FAILED
        assert rows[twin].last_error == (
            f"another product ({owner}) has the same path {HST}/o58701010/{X1D}; "
            "only that one is fetched"
        )
        # the twin is never requested; the owner's own 404 is the owner's alone
        assert not any(twin in q for q in downloads(emulator))
        assert rows[owner].state is ProductState.FAILED
        assert "404" in (rows[owner].last_error or "")


async def test_twin_never_overwrites_its_owner(config: Config, emulator: Emulator):
    twin = f"mast:HST/product/o58701010/{X1D};reprocessed"
    emulator.catalogue.add_product("o58701010", X1D, 5760, data_uri=twin)

    await run_once(config)
    await run_once(config)

    path = config.paths.mirror / HST / "o58701010" / X1D
    assert path.read_bytes() == emulator.body(f"mast:HST/product/{X1D}")
    assert product_rows(config)[f"mast:HST/product/{X1D}"].state is ProductState.DONE


# -- deadlines, retries, batches -----------------------------------------------------------


async def test_hung_lookup_ends_with_a_clear_error_and_others_complete(
    config: Config, emulator: Emulator
):
    emulator.catalogue.add_program(9999, files=2, size=5760)
    (config.paths.requests / "other.toml").write_text("proposal_id = 9999\n")
    # the first product list asked for never comes (well, not for an hour)
    emulator.faults.add(
        Fault(
            FaultKind.SLOW_FIRST_BYTE,
            match="Mast.Caom.Products",
            endpoint="invoke",
            delay=3600,
            times=1,
        )
    )

    await run_once(with_timeout(config, 1))

    states = {name: request_row(config, name) for name in ("7291", "other")}
    hung = [r for r in states.values() if r.state is RequestState.INCOMPLETE]
    done = [r for r in states.values() if r.state is RequestState.DONE]
    assert len(hung) == len(done) == 1
    assert hung[0].last_error == "the archive did not answer within 1 s"
    assert hung[0].next_lookup is not None


async def test_transient_portal_failures_are_retried(config: Config, emulator: Emulator):
    cfg = replace(config, download=replace(config.download, retries=3))
    emulator.faults.add(Fault(FaultKind.STATUS, status=503, endpoint="invoke", times=2))
    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Products", times=1))

    assert await run_once(cfg) == 0

    assert request_row(cfg).state is RequestState.DONE


async def test_product_lists_are_asked_in_batches_and_a_failed_batch_alone_again(
    config: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    from hstsync.archive import paging

    monkeypatch.setattr(paging, "OBSID_BATCH", 1)
    cfg = replace(config, download=replace(config.download, retries=2))
    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Products", times=1))

    assert await run_once(cfg) == 0

    # two observations, one obsid per batch: two batches, the failed one asked twice
    assert invokes(emulator, "Mast.Caom.Products") == 3
    assert len({Path(q).name for q in downloads(emulator)}) == len(TUTORIAL_FILES)


async def test_sigterm_during_a_hung_lookup_exits_promptly(tmp_path: Path, emulator: Emulator):
    emulator.faults.add(
        Fault(
            FaultKind.SLOW_FIRST_BYTE,
            match="Mast.Caom.Filtered*",
            endpoint="invoke",
            delay=3600,
            times=None,
        )
    )
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    config = tmp_path / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{emulator.url}"\ntimeout = 3600\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hstsync",
        "run",
        "--once",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"HSTSYNC_NO_KEYRING": "1"},
    )
    try:
        while invokes(emulator, "Mast.Caom.Filtered") == 0:
            assert proc.returncode is None
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # a liveness bound, not a speed check: before, it waited for the hour
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1


# -- the failed-lookup schedule ------------------------------------------------------------


def test_failed_lookups_are_retried_within_minutes_backing_off_to_an_hour():
    minutes = [relookup_delay(n) / 60 for n in range(1, 9)]
    assert minutes == [2, 4, 8, 16, 32, 60, 60, 60]


def test_each_failed_lookup_is_counted_and_scheduled(tmp_path: Path):
    from hstsync.model import Request

    with Store(tmp_path / "db.sqlite") as store:
        store.upsert_request(Request("r", ("7291",)), "r.toml")
        for failures, minutes in [(1, 2), (2, 4), (3, 8)]:
            before = datetime.now(UTC)
            row = store.lookup_failed("r", "cannot reach the archive")
            due = datetime.fromisoformat(row.next_lookup or "")
            assert row.lookup_failures == failures
            assert row.last_error == "cannot reach the archive"
            expected = before + timedelta(minutes=minutes)
            assert abs((due - expected).total_seconds()) < 2
        assert store.retry_lookups("r") == 1
        due = datetime.fromisoformat(store.get_request("r").next_lookup or "")
        assert due <= datetime.now(UTC)


async def running(config: Config) -> tuple[Daemon, asyncio.Task[int]]:
    service = Daemon(config, settle=0.05, rescan_every=0.2)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 20)
    return service, task


async def until(predicate, what: str) -> None:
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_daemon_looks_a_failed_request_up_again_within_minutes_not_a_day(
    config: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    shift = timedelta()
    monkeypatch.setattr(daemon_module, "_now", lambda: datetime.now(UTC) + shift)
    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Filtered", times=None))
    service, task = await running(config)
    try:
        await until(lambda: (r := request_row(config)) and r.lookup_failures == 1, "a failure")
        asked = invokes(emulator, "Mast.Caom.Filtered")
        service._wake.set()
        await asyncio.sleep(0.3)
        assert invokes(emulator, "Mast.Caom.Filtered") == asked  # not before it is due

        emulator.faults.clear()
        shift = timedelta(minutes=3)  # past the 2 minutes, far short of resync_every
        service._wake.set()
        await until(lambda: request_row(config).state is RequestState.DONE, "done")
        row = request_row(config)
        assert row.next_lookup is None and row.lookup_failures == 0 and row.last_error is None
    finally:
        service.stop()
        await task


async def test_retry_puts_a_failed_lookup_back_at_once(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Filtered", times=None))
    service, task = await running(config)
    try:
        await until(lambda: (r := request_row(config)) and r.lookup_failures == 1, "a failure")
        emulator.faults.clear()
        with Store(config.paths.database) as store:  # what `hstsync retry 7291` does
            assert store.retry_lookups("7291") == 1
        wake(config.paths.requests)
        await until(lambda: request_row(config).state is RequestState.DONE, "done")
    finally:
        service.stop()
        await task


async def test_failed_resync_of_a_done_request_keeps_it_done_and_says_so(
    config: Config, emulator: Emulator
):
    assert await run_once(config) == 0
    emulator.faults.add(Fault(FaultKind.STATUS, status=502, endpoint="invoke", times=None))

    assert await run_once(config) == 0

    row = request_row(config)
    assert row.state is RequestState.DONE
    assert row.last_error is not None
    assert row.last_error.startswith("last re-sync failed: cannot reach the archive")
    assert {r.state for r in product_rows(config).values()} == {ProductState.DONE}


# -- the server's size -----------------------------------------------------------------------


async def test_size_recorded_from_the_server_is_kept_while_the_catalogue_stays_wrong(
    config: Config, emulator: Emulator
):
    assert await run_once(config) == 0
    uri = f"mast:HST/product/{X1D}"
    real = TUTORIAL_FILES[f"o58701010/{X1D}"]
    wrong = real + 2880
    # the catalogue says `wrong` from now on; the server sent `real` (the file on disk),
    # and the transfer recorded it, as one does when the server's verified answer wins
    emulator.catalogue.update_product(uri, size=wrong)
    with Store(config.paths.database) as store:
        rows = {r.product.data_uri: r.product for r in store.products("7291")}
        store.replace_products(
            "7291", [replace(p, size=wrong) if u == uri else p for u, p in rows.items()]
        )
        store.mark(
            "7291",
            uri,
            ProductState.DONE,
            size=real,
            size_note=f"server sent {real} bytes, catalogue says {wrong}",
        )
    before = len(emulator.requests)

    assert await run_once(config) == 0

    assert downloads(emulator, before) == []
    row = product_rows(config)[uri]
    assert row.state is ProductState.DONE and row.product.size == real
    doc = product_document(row)
    assert doc["size"] == real and doc["catalogue_size"] == wrong
    assert doc["size_note"] == f"server sent {real} bytes, catalogue says {wrong}"


async def test_wrong_catalogue_size_is_fetched_once_then_never_again(
    config: Config, emulator: Emulator
):
    # the catalogue says one FITS block more than the (sound) file the server sends
    real = TUTORIAL_FILES[f"o58701010/{X1D}"]
    emulator.catalogue.set_product_quirks(X1D, cells={"size": real + 2880})
    await run_once(config)
    row = product_rows(config)[f"mast:HST/product/{X1D}"]
    assert row.state is ProductState.DONE and row.size_note
    before = len(emulator.requests)

    await run_once(config)

    assert downloads(emulator, before) == []


# -- files already in the mirror ---------------------------------------------------------------


async def test_file_of_the_right_size_with_other_content_is_fetched_not_accepted(
    config: Config, emulator: Emulator
):
    uri = f"mast:HST/product/{X1D}"
    path = config.paths.mirror / HST / "o58701010" / X1D
    path.parent.mkdir(parents=True)
    impostor = b"SIMPLE  =                    F".ljust(TUTORIAL_FILES[f"o58701010/{X1D}"], b" ")
    path.write_bytes(impostor)

    assert await run_once(config) == 0

    assert path.read_bytes() == emulator.body(uri)
    assert path.with_name(X1D + ".rejected").read_bytes() == impostor
    assert any(X1D in q for q in downloads(emulator))


async def test_sound_file_already_in_the_mirror_is_adopted_without_a_transfer(
    config: Config, emulator: Emulator
):
    uri = f"mast:HST/product/{X1D}"
    path = config.paths.mirror / HST / "o58701010" / X1D
    path.parent.mkdir(parents=True)
    path.write_bytes(emulator.body(uri))

    assert await run_once(config) == 0

    assert not any(X1D in q for q in downloads(emulator))
    assert not path.with_name(X1D + ".rejected").exists()
