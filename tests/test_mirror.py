"""End to end, in process: manifests in a real request directory, the emulator, a real
SQLite file, and the files on disk checked byte for byte."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tutorial import TUTORIAL_BYTES, TUTORIAL_FILES

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.model import ProductState, RequestState
from hstsync.service.daemon import run_once
from hstsync.store.db import Store

HST = Path("mastDownload/HST")


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.05, timeout=5)
    cfg.paths.requests.mkdir()
    return cfg


def drop(config: Config, name: str, text: str) -> Path:
    path = config.paths.requests / name
    path.write_text(text, encoding="utf-8")
    return path


def mirrored(config: Config) -> dict[str, int]:
    root = config.paths.mirror / HST
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_identical(config: Config, emulator: Emulator) -> None:
    for rel in TUTORIAL_FILES:
        name = rel.split("/")[1]
        body = (config.paths.mirror / HST / rel).read_bytes()
        assert body == emulator.body(f"mast:HST/product/{name}"), rel


def downloads(emulator: Emulator, since: int = 0) -> list[str]:
    return [
        r.query
        for r in emulator.requests[since:]
        if r.method == "GET" and r.path.endswith("/Download/file")
    ]


async def test_tutorial_manifest_yields_exactly_the_six_files(config: Config, emulator: Emulator):
    drop(config, "7291.toml", TUTORIAL_MANIFEST)

    assert await run_once(config) == 0

    assert mirrored(config) == TUTORIAL_FILES
    assert_identical(config, emulator)
    with Store.open_readonly(config.paths.database) as store:
        [summary] = store.summaries()
        assert summary.request.name == "7291"
        assert summary.request.state is RequestState.DONE
        assert summary.counts.done == summary.counts.total == 6
        assert summary.bytes_total == summary.bytes_done == TUTORIAL_BYTES
        assert {row.state for row in store.products("7291")} == {ProductState.DONE}


async def test_second_run_fetches_nothing(config: Config, emulator: Emulator):
    drop(config, "7291.toml", TUTORIAL_MANIFEST)
    assert await run_once(config) == 0
    before = len(emulator.requests)

    assert await run_once(config) == 0

    assert downloads(emulator, before) == []
    assert mirrored(config) == TUTORIAL_FILES


async def test_files_already_in_astroquerys_layout_are_not_fetched(
    config: Config, emulator: Emulator
):
    for rel in TUTORIAL_FILES:
        path = config.paths.mirror / HST / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(emulator.body(f"mast:HST/product/{rel.split('/')[1]}"))
    drop(config, "7291.toml", TUTORIAL_MANIFEST)

    assert await run_once(config) == 0

    assert downloads(emulator) == []


async def test_cut_transfer_resumes_with_range_and_ends_byte_identical(
    config: Config, emulator: Emulator
):
    # one stream per file here; segments cut and resumed: test_segments.py
    config = replace(config, download=replace(config.download, segment_min=0))
    emulator.faults.add(
        Fault(FaultKind.RESET, match="o58701010_x2d.fits", after=7_000_000, times=1)
    )
    drop(config, "7291.toml", TUTORIAL_MANIFEST)

    assert await run_once(config) == 0

    x2d = [r for r in emulator.requests if r.method == "GET" and "o58701010_x2d.fits" in r.query]
    assert len(x2d) == 2
    assert "range" not in {k.lower() for k in x2d[0].headers}
    ranges = {k.lower(): v for k, v in x2d[1].headers.items()}
    start = int(ranges["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 7_000_000
    # the resumed request sent only what was missing
    assert x2d[1].body_bytes_sent == 14_474_880 - start
    assert_identical(config, emulator)
    with Store.open_readonly(config.paths.database) as store:
        row = next(r for r in store.products("7291") if r.product.filename == "o58701010_x2d.fits")
        assert row.state is ProductState.DONE


async def test_server_ignoring_range_still_ends_byte_identical(config: Config, emulator: Emulator):
    name = "o58701010_x2d.fits"
    body = emulator.body(f"mast:HST/product/{name}")
    part = config.paths.mirror / HST / "o58701010" / f"{name}.part"
    part.parent.mkdir(parents=True)
    # a partial file whose bytes are wrong: a server that ignores Range answers 200,
    # and hstsync must start over rather than append the whole body to it
    part.write_bytes(b"\0" * (len(body) // 2))
    emulator.faults.add(Fault(FaultKind.IGNORE_RANGE, match=name, times=None))
    drop(config, "7291.toml", TUTORIAL_MANIFEST)

    assert await run_once(config) == 0

    assert_identical(config, emulator)
    assert not part.exists()


async def test_invalid_manifest_is_set_aside_and_others_still_mirror(
    config: Config, emulator: Emulator
):
    drop(config, "7291.toml", TUTORIAL_MANIFEST)
    drop(config, "broken.toml", "proposal_id = [\n")

    assert await run_once(config) == 1

    assert mirrored(config) == TUTORIAL_FILES
    failed = config.paths.requests / "failed"
    assert (failed / "broken.toml").exists()
    assert not (config.paths.requests / "broken.toml").exists()
    reason = (failed / "broken.error.txt").read_text()
    assert "TOML" in reason
    with Store.open_readonly(config.paths.database) as store:
        broken = store.get_request("broken")
        assert broken is not None and broken.state is RequestState.INVALID
        assert broken.last_error and "TOML" in broken.last_error


async def test_proposal_without_observations_is_invalid(config: Config, emulator: Emulator):
    drop(config, "nothing.toml", "proposal_id = 1\n")

    assert await run_once(config) == 1

    with Store.open_readonly(config.paths.database) as store:
        row = store.get_request("nothing")
        assert row is not None and row.state is RequestState.INVALID
        assert row.last_error and "no HST observations" in row.last_error


async def test_unknown_criterion_is_invalid_with_the_archives_hint(
    config: Config, emulator: Emulator
):
    drop(config, "typo.toml", 'proposal_id = 7291\n[criteria]\ninstrument_nam = ["STIS/CCD"]\n')

    assert await run_once(config) == 1

    with Store.open_readonly(config.paths.database) as store:
        row = store.get_request("typo")
        assert row is not None and row.state is RequestState.INVALID
        assert row.last_error and "instrument_name" in row.last_error


async def test_removing_a_manifest_stops_its_request_and_keeps_files(
    config: Config, emulator: Emulator
):
    manifest = drop(config, "7291.toml", TUTORIAL_MANIFEST)
    assert await run_once(config) == 0
    manifest.unlink()

    assert await run_once(config) == 0

    with Store.open_readonly(config.paths.database) as store:
        assert store.get_request("7291") is None
    assert mirrored(config) == TUTORIAL_FILES


async def test_persistent_failure_is_recorded_and_exit_code_is_one(
    config: Config, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.STATUS, match="o58701030_flt.fits", status=500, times=None))
    drop(config, "7291.toml", TUTORIAL_MANIFEST)

    assert await run_once(config) == 1

    with Store.open_readonly(config.paths.database) as store:
        [summary] = store.summaries()
        assert summary.request.state is RequestState.INCOMPLETE
        assert summary.counts.done == 5 and summary.counts.failed == 1
        row = next(r for r in store.products("7291") if r.state is ProductState.FAILED)
        assert row.product.filename == "o58701030_flt.fits"
        assert row.attempts == config.download.retries + 1
        assert row.last_error and "500" in row.last_error
    assert not (config.paths.mirror / HST / "o58701030" / "o58701030_flt.fits").exists()

    # the archive recovers: the next pass fetches exactly the failed file
    emulator.faults.clear()
    before, sent = len(emulator.requests), emulator.bytes_sent
    assert await run_once(config) == 0
    assert [q for q in downloads(emulator, before)] == [
        q for q in downloads(emulator, before) if "o58701030_flt.fits" in q
    ]
    # in one request or several segments, and fetched afresh
    assert emulator.bytes_sent - sent >= TUTORIAL_FILES["o58701030/o58701030_flt.fits"]
