"""Faults through a whole pass: the emulator misbehaves, ``run_once`` mirrors into a real
tree and a real SQLite file, and each test reads the end state where users read it —
the database (``state``, ``attempts``, ``last_error``) and the files on disk.

Each fault hits one file of the tutorial's six; the other five must end done either
way, so every test also shows that one bad file does not hold up the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import small_disk

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.errors import CorruptFileError
from hstsync.model import ProductState, RequestState
from hstsync.service.daemon import run_once
from hstsync.service.sync.results import RESULTS_DIR
from hstsync.store import ProductRow, Store
from hstsync.transfer.verify import verify_file

HST = Path("mastDownload/HST")
X1D = "o58701010_x1d.fits"
X2D = "o58701010_x2d.fits"
FLT = "o58701030_flt.fits"
SIX = [f"{o}_{k}.fits" for o in ("o58701010", "o58701030") for k in ("x1d", "x2d", "flt")]
#: seconds without a byte before a transfer is retried, in these tests
TIMEOUT = 1.0
RETRIES = 3


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(
        tmp_path,
        server=emulator.url,
        retries=RETRIES,
        backoff=0.01,
        backoff_max=0.05,
        timeout=TIMEOUT,
        # one request per file: these faults hit a single stream (in segments:
        # test_segments.py)
        segment_min=0,
    )
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    return cfg


def path_of(config: Config, name: str) -> Path:
    return config.paths.mirror / HST / name.split("_")[0] / name


def part_of(config: Config, name: str) -> Path:
    final = path_of(config, name)
    return final.with_name(final.name + ".part")


def rows(config: Config, request: str = "7291") -> dict[str, ProductRow]:
    with Store.open_readonly(config.paths.database) as store:
        return {row.product.filename: row for row in store.products(request)}


def request_row(config: Config, request: str = "7291"):  # type: ignore[no-untyped-def]
    with Store.open_readonly(config.paths.database) as store:
        return store.get_request(request)


def gets(emulator: Emulator, name: str) -> list[dict[str, str]]:
    return [
        {k.lower(): v for k, v in r.headers.items()}
        for r in emulator.requests
        if r.method == "GET" and r.path.endswith("/Download/file") and name in r.query
    ]


def assert_done_identical(config: Config, emulator: Emulator, names: list[str]) -> None:
    products = rows(config)
    for name in names:
        assert products[name].state is ProductState.DONE, (name, products[name].last_error)
        assert path_of(config, name).read_bytes() == emulator.body(f"mast:HST/product/{name}")
        assert not part_of(config, name).exists()


def others(*names: str) -> list[str]:
    return [n for n in SIX if n not in names]


def assert_failed_not_placed(config: Config, name: str, attempts: int, error: str) -> ProductRow:
    row = rows(config)[name]
    assert row.state is ProductState.FAILED
    assert row.attempts == attempts
    assert row.last_error is not None and error in row.last_error, row.last_error
    assert not path_of(config, name).exists()
    request = request_row(config)
    assert request is not None and request.state is RequestState.INCOMPLETE
    assert request.last_error is not None and "1 failed" in request.last_error
    assert name in request.last_error and error in request.last_error
    return row


# -- the network and the server -------------------------------------------------------


async def test_reset_mid_body_resumes_and_ends_byte_identical(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.RESET, match=X2D, after=6_000_000, times=1))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[X2D].attempts == 2 and rows(config)[X2D].last_error is None
    first, second = gets(emulator, X2D)
    assert "range" not in first and second["range"].startswith("bytes=")


@pytest.mark.parametrize("status", [503, 429])
async def test_busy_server_is_retried_after_its_retry_after(
    config: Config, emulator: Emulator, status: int, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="hstsync.transfer")
    emulator.faults.add(Fault(FaultKind.STATUS, match=X1D, status=status, retry_after=1, times=1))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[X1D].attempts == 2
    # the wait asked for, as logged: the server's 1 s, not the 0.05 s backoff cap
    [wait] = [
        float(m.group(1))
        for m in re.finditer(r"retrying in ([\d.]+) s", caplog.text)
        if X1D in caplog.text
    ]
    assert wait >= 1.0


async def test_server_ignoring_range_after_a_cut_restarts_from_zero(
    config: Config, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.RESET, match=X2D, after=5_000_000, times=1))
    emulator.faults.add(Fault(FaultKind.IGNORE_RANGE, match=X2D, times=None))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    _, second = gets(emulator, X2D)
    # the resume asked for a range, got the whole body, and did not append it
    assert second["range"].startswith("bytes=")


async def test_short_body_is_completed_by_a_second_attempt(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.SHORT_BODY, match=FLT, after=4_000_000, times=1))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[FLT].attempts == 2
    assert gets(emulator, FLT)[1]["range"] == "bytes=4000000-"


async def test_catalogue_size_differing_from_served_size_the_server_wins(
    config: Config, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.WRONG_SIZE, match=X1D, after=10, times=None))

    assert await run_once(config) == 0

    row = rows(config)[X1D]
    assert row.state is ProductState.DONE and row.attempts == 1
    data = path_of(config, X1D).read_bytes()
    assert len(data) == 77770 and data.startswith(emulator.body(f"mast:HST/product/{X1D}"))
    assert len(gets(emulator, X1D)) == 1  # not fetched twice
    assert not part_of(config, X1D).exists()
    assert_done_identical(config, emulator, others(X1D))


async def test_stall_longer_than_timeout_is_retried(config: Config, emulator: Emulator):
    emulator.faults.add(
        Fault(FaultKind.STALL, match=X2D, after=2_000_000, delay=TIMEOUT * 3, times=1)
    )

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[X2D].attempts == 2
    assert gets(emulator, X2D)[1]["range"] == "bytes=2000000-"


async def test_404_for_a_catalogued_product_fails_at_once(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.STATUS, match=FLT, status=404, times=None))

    assert await run_once(config) == 1

    assert_failed_not_placed(config, FLT, 1, "not found on the server (HTTP 404)")
    assert_done_identical(config, emulator, others(FLT))


async def test_slow_first_byte_within_timeout_is_waited_for(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.SLOW_FIRST_BYTE, match=X1D, delay=TIMEOUT / 4))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[X1D].attempts == 1


async def test_slow_first_byte_beyond_timeout_is_retried(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.SLOW_FIRST_BYTE, match=X1D, delay=TIMEOUT * 2.5))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[X1D].attempts == 2


async def test_product_that_keeps_failing_ends_failed_and_others_finish(
    config: Config, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.RESET, match=X2D, after=1_000_000, times=None))

    assert await run_once(config) == 1

    row = assert_failed_not_placed(
        config, X2D, RETRIES + 1, "the connection closed before the body was complete"
    )
    assert len(gets(emulator, X2D)) == RETRIES + 1
    # what arrived is kept for a later resume, and the row says how much
    assert part_of(config, X2D).stat().st_size == row.bytes_done > 0
    assert_done_identical(config, emulator, others(X2D))


# -- the portal ---------------------------------------------------------------------------


async def test_invoke_executing_before_complete_still_resolves(config: Config, emulator: Emulator):
    polled = emulator.faults.add(
        Fault(FaultKind.INVOKE_EXECUTING, match="Mast.Caom.Filtered", times=2)
    )

    assert await run_once(config) == 0

    assert polled.hits == 2
    request = request_row(config)
    assert request is not None and request.state is RequestState.DONE
    assert_done_identical(config, emulator, SIX)


async def test_invoke_error_keeps_earlier_products_and_says_why(config: Config, emulator: Emulator):
    assert await run_once(config) == 0
    emulator.faults.add(
        Fault(
            FaultKind.INVOKE_ERROR,
            match="Mast.Caom.Filtered",
            times=None,
            message="Database timeout",
        )
    )

    # every file is still present and verified: a failed re-sync does not undo that
    assert await run_once(config) == 0

    request = request_row(config)
    assert request is not None and request.state is RequestState.DONE
    assert request.last_error == (
        "last re-sync failed: the archive answered with an error: Database timeout"
    )
    assert request.next_lookup is not None and request.lookup_failures == 1
    # the products an earlier pass resolved and fetched are neither forgotten nor deleted
    assert set(rows(config)) == set(SIX)
    assert_done_identical(config, emulator, SIX)


# -- verification ----------------------------------------------------------------------


async def test_corrupt_body_once_is_fetched_again_and_ends_byte_identical(
    config: Config, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.CORRUPT, match=FLT, after=5_000_000, times=1))

    assert await run_once(config) == 0

    assert_done_identical(config, emulator, SIX)
    assert rows(config)[FLT].attempts == 2
    # the corrupt part was deleted, not resumed from
    assert [h.get("range") for h in gets(emulator, FLT)] == [None, None]


async def test_corrupt_body_forever_fails_without_a_final_file(config: Config, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.CORRUPT, match=FLT, after=5_000_000, times=None))

    assert await run_once(config) == 1

    assert_failed_not_placed(
        config, FLT, RETRIES + 1, "FITS checksum mismatch in HDU 0 — the file is corrupt"
    )
    assert not part_of(config, FLT).exists()
    assert_done_identical(config, emulator, others(FLT))


async def test_body_that_is_not_fits_is_refused(config: Config, emulator: Emulator):
    # A .fits product whose body is no FITS file at all (the emulator serves plain
    # data at sizes that are not whole FITS blocks), like an HTML page served with 200.
    emulator.catalogue.update_product(X1D, size=77761)

    assert await run_once(config) == 1

    assert_failed_not_placed(config, X1D, RETRIES + 1, "not a valid FITS file")
    assert_done_identical(config, emulator, others(X1D))


def test_fits_without_checksum_cards_passes_and_with_them_is_checked(tmp_path: Path):
    from astropy.io import fits

    plain, summed = tmp_path / "plain.fits", tmp_path / "summed.fits"
    hdus = fits.HDUList(
        [fits.PrimaryHDU(np.arange(100, dtype=">i2")), fits.ImageHDU(np.ones((8, 8)))]
    )
    hdus.writeto(plain)
    hdus.writeto(summed, checksum=True)
    verify_file(plain, "plain.fits")
    verify_file(summed, "summed.fits")

    data = bytearray(summed.read_bytes())
    data[-100] ^= 0x01  # inside the second HDU's data
    summed.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="FITS checksum mismatch in HDU 1"):
        verify_file(summed, "summed.fits")
    # other files by their format's own end: an HTML page named .png is not a PNG
    (tmp_path / "page.png").write_bytes(b"<html>not a png</html>")
    with pytest.raises(CorruptFileError, match="not a PNG file"):
        verify_file(tmp_path / "page.png", "page.png")
    # a name whose format has no end check is judged by its size alone
    (tmp_path / "page.dat").write_bytes(b"<html>anything</html>")
    verify_file(tmp_path / "page.dat", "page.dat")


def test_html_page_named_fits_is_not_fits(tmp_path: Path):
    page = tmp_path / "x.fits.part"
    page.write_bytes(b"<!DOCTYPE html><html><body>Service unavailable</body></html>".ljust(5760))
    with pytest.raises(CorruptFileError, match="not a valid FITS file"):
        verify_file(page, "x.fits")


# -- the disk ----------------------------------------------------------------------------


async def test_disk_full_fails_the_product_keeps_the_part_and_the_request_says_why(
    config: Config, emulator: Emulator
):
    part = part_of(config, X1D)
    full = [name for name in SIX if name.startswith("o58701010")]
    with small_disk(part.parent):  # one page of room for o58701010's three files
        assert await run_once(config) == 1

        for name in full:
            row = rows(config)[name]
            assert row.state is ProductState.FAILED and row.attempts == 1
            assert (row.last_error or "").startswith("disk full (ENOSPC) writing")
            assert not path_of(config, name).exists()
        assert part.exists()  # never renamed into place
        request = request_row(config)
        assert request is not None and request.state is RequestState.INCOMPLETE
        assert "3 failed" in request.last_error and "disk full (ENOSPC)" in request.last_error
        assert_done_identical(config, emulator, others(*full))

    # room again (the small disk is gone): the next pass fetches exactly those files
    assert await run_once(config) == 0
    assert_done_identical(config, emulator, SIX)


async def test_unwritable_mirror_fails_those_products_and_says_why(
    config: Config, emulator: Emulator
):
    # As root, permissions do not stop writes; a file where a directory must go does.
    blocker = config.paths.mirror / HST / "o58701030"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")

    assert await run_once(config) == 1

    products = rows(config)
    for name in SIX[3:]:
        assert products[name].state is ProductState.FAILED
        assert products[name].attempts == 0  # nothing was sent for them
        assert "(EEXIST) creating" in (products[name].last_error or "")
    assert blocker.read_text() == "in the way"
    request = request_row(config)
    assert request is not None and request.state is RequestState.INCOMPLETE
    assert request.last_error is not None and request.last_error.startswith("3 failed")
    assert "EEXIST" in request.last_error
    assert gets(emulator, "o58701030") == []
    assert_done_identical(config, emulator, SIX[:3])


# -- hostile catalogue data ------------------------------------------------------------------


#: "{tmp}" becomes the test's own tmp dir: an absolute path that escaped would land
#: where the walk at the end of the test finds it, not in the machine's /tmp
HOSTILE_OBS_IDS = ["../escape", "{tmp}/abs", "nul\x00obs", ".."]
HOSTILE_FILENAMES = [
    "../../../../escape.fits",
    "{tmp}/absolute.fits",
    "sub/dir.fits",
    "..",
    "nul\x00byte.fits",
    "bell\x07.fits",
    "line\nbreak.fits",
    "back\\slash.fits",
]


async def test_hostile_catalogue_rows_are_refused_and_nothing_escapes(
    tmp_path: Path, config: Config, emulator: Emulator
):
    obs_ids = [bad.format(tmp=tmp_path) for bad in HOSTILE_OBS_IDS]
    filenames = [name.format(tmp=tmp_path) for name in HOSTILE_FILENAMES]
    cat = emulator.catalogue
    good = cat.add_program(90002, files=2, size=2880 * 4)
    obs_id = good[0].obs_id
    for i, name in enumerate(filenames):
        cat.add_product(obs_id, name, 2880 * 3, data_uri=f"mast:HST/product/hostile{i}.fits")
    for bad in obs_ids:
        cat.add_observation(
            obs_collection="HST", obs_id=bad, proposal_id="90002", dataproduct_type="image"
        )
        cat.add_product(bad, "innocent.fits", 2880 * 3, data_uri=f"mast:HST/product/{bad}.fits")
    # a dataURI with path and URL tricks but a harmless filename: it only names what to
    # ask the server for, never where the file goes
    trick = cat.add_product(
        obs_id, "tricky.fits", 2880 * 3, data_uri="mast:HST/product/../../../etc/passwd?x=1&uri=/"
    )
    (config.paths.requests / "7291.toml").unlink()
    (config.paths.requests / "hostile.toml").write_text("proposal_id = 90002\n")

    assert await run_once(config) == 1

    with Store.open_readonly(config.paths.database) as store:
        products = store.products("hostile")
    refused = [r for r in products if r.state is ProductState.FAILED]
    for row in refused:
        assert (row.last_error or "").startswith("refused: "), row.last_error
    # every hostile row came through the archive's JSON (NUL and all) and was refused
    assert sorted((r.product.obs_id, r.product.filename) for r in refused) == sorted(
        [(obs_id, name) for name in filenames] + [(bad, "innocent.fits") for bad in obs_ids]
    )
    done = {r.product.filename for r in products if r.state is ProductState.DONE}
    assert done == {p.filename for p in good} | {"tricky.fits"}
    assert (config.paths.mirror / HST / obs_id / "tricky.fits").read_bytes() == emulator.body(
        trick.data_uri
    )
    fetched = [r.query for r in emulator.requests if r.path.endswith("/Download/file")]
    assert not any("hostile" in q for q in fetched)

    # nothing anywhere but where it belongs
    for path in tmp_path.rglob("*"):
        if path == config.paths.mirror:
            continue
        if path.is_relative_to(config.paths.mirror):
            rel = path.relative_to(config.paths.mirror)
            assert rel.parts[0] in {"mastDownload", RESULTS_DIR}, path
            if rel.parts[0] == "mastDownload":
                assert path.resolve().is_relative_to(config.paths.mirror / "mastDownload")
        else:
            assert path.is_relative_to(config.paths.requests) or (
                path.name.startswith("hstsync.db")
            ), path


# -- bad manifests in a running daemon ------------------------------------------------------

BAD_MANIFESTS: dict[str, tuple[bytes, str]] = {
    # file name: (contents, words its error note must hold)
    "notoml.toml": (b"proposal_id = [\n", "not valid TOML"),
    "notjson.json": (b"{proposal_id: 7291", "not valid JSON"),
    "types.toml": (b"proposal_id = 1.5\n", "proposal_id must be a number"),
    "unknown.toml": (b"proposal_id = 7291\nproposal = 1\n", "unknown key 'proposal'"),
    "column.toml": (
        b'proposal_id = 7291\n[filters]\nproductTyp = ["SCIENCE"]\n',
        "'productTyp' is not a product column",
    ),
    "huge.toml": (b"proposal_id = 7291\n" + b"#" * 70_000 + b"\n", "larger than 64 KiB"),
    "binary.toml": (bytes(range(256)) * 8, "not UTF-8 text"),
    "nested.json": (b"[" * 60_000, "nested too deeply"),
}


async def test_bad_manifests_are_set_aside_while_a_good_one_is_mirrored(
    tmp_path: Path, emulator: Emulator
):
    from helpers import daemon, request_state, until, write_config

    config = write_config(tmp_path, emulator.url)
    requests = tmp_path / "requests"
    failed = requests / "failed"
    async with daemon(tmp_path, config) as d:
        for name, (data, _) in BAD_MANIFESTS.items():
            (requests / f"{name}.tmp").write_bytes(data)
        (requests / "nothing.toml.tmp").write_text("proposal_id = 1\n")
        (requests / "7291.toml.tmp").write_text(TUTORIAL_MANIFEST)
        for tmp in sorted(requests.glob("*.tmp")):
            tmp.rename(tmp.with_suffix(""))

        def settled() -> bool:
            return (
                request_state(tmp_path, "7291") is RequestState.DONE
                and request_state(tmp_path, "nothing") is RequestState.INVALID
                and all((failed / name).exists() for name in BAD_MANIFESTS)
            )

        await until(settled, what="the good manifest mirrored, the bad set aside", daemon=d)
        assert d.proc.returncode is None
        output = d.output()

    assert "Traceback" not in output
    for name, (data, words) in BAD_MANIFESTS.items():
        assert not (requests / name).exists()
        assert (failed / name).read_bytes() == data  # kept as it was, for the user to fix
        note = (failed / f"{name.rsplit('.', 1)[0]}.error.txt").read_text()
        assert words in note, note
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        nothing = store.get_request("nothing")
        assert nothing is not None and nothing.last_error is not None
        assert "no HST observations" in nothing.last_error
        done = [r for r in store.products("7291") if r.state is ProductState.DONE]
    assert len(done) == 6


async def test_status_shows_a_retried_files_attempts_and_error_while_it_waits(
    config: Config, emulator: Emulator
):
    # 503 with Retry-After: 2 s during which the pass is still running
    emulator.faults.add(Fault(FaultKind.STATUS, match=X1D, status=503, retry_after=2, times=1))
    task = asyncio.create_task(run_once(config))
    seen = None
    for _ in range(400):
        await asyncio.sleep(0.01)
        if config.paths.database.exists():
            try:
                row = rows(config).get(X1D)
            except Exception:  # the schema may not be there yet
                continue
            if row is not None and row.attempts >= 1:
                seen = row
                break
    assert seen is not None, "no attempt was visible while the file waited"
    assert seen.state is ProductState.DOWNLOADING and "503" in (seen.last_error or "")
    assert not task.done()
    assert await task == 0
    final = rows(config)[X1D]
    assert final.state is ProductState.DONE and final.attempts == 2 and final.last_error is None


async def test_a_retried_file_shared_by_two_requests_counts_its_attempts_once_in_each(
    config: Config, emulator: Emulator
):
    # two requests name the same six files: one transfer each, recorded for both
    (config.paths.requests / "again.toml").write_text(TUTORIAL_MANIFEST)
    # failing twice, a second apart: the second request is waiting by the second failure
    emulator.faults.add(Fault(FaultKind.STATUS, match=X1D, status=503, retry_after=1, times=2))

    assert await run_once(config) == 0

    assert len(gets(emulator, X1D)) == 3  # one transfer, three attempts
    for request in ("7291", "again"):
        row = rows(config, request)[X1D]
        assert (row.state, row.attempts, row.last_error) == (ProductState.DONE, 3, None)
