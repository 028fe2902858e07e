"""The MAST emulator speaks MAST's protocol well enough for unmodified astroquery,
serves the tutorial's proposal 7291, and misbehaves exactly as each fault says."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import aiohttp
import pytest
import yarl
from astropy.io import fits

from hstsync.emulator import (
    EXCLUSIVE_ACCESS,
    Catalogue,
    Emulator,
    Fault,
    FaultKind,
    default_catalogue,
    run_in_thread,
)
from hstsync.emulator.cli import parse_fault, parse_program
from hstsync.emulator.fits import PATTERN_LENGTH, Bodies
from tests.emulator_helpers import download_url, fetch, invokes, observations

SIX = {
    "o58701010_x1d.fits": 77760,
    "o58701010_x2d.fits": 14474880,
    "o58701010_flt.fits": 10535040,
    "o58701030_x1d.fits": 77760,
    "o58701030_x2d.fits": 14474880,
    "o58701030_flt.fits": 10535040,
}
REPO = str(Path(__file__).resolve().parents[1])
X1D = "mast:HST/product/o58701010_x1d.fits"
X2D = "mast:HST/product/o58701010_x2d.fits"


async def read_until_cut(emu: Emulator, uri: str) -> tuple[int, bytes, BaseException | None]:
    """Read a body chunk by chunk, keeping what arrived before the connection failed."""
    got = bytearray()
    async with (
        aiohttp.ClientSession() as session,
        session.get(download_url(emu, uri)) as resp,
    ):
        try:
            async for chunk in resp.content.iter_chunked(1 << 20):
                got += chunk
        except aiohttp.ClientError as exc:
            return int(resp.headers["Content-Length"]), bytes(got), exc
        return int(resp.headers["Content-Length"]), bytes(got), None


# -- the portal, through astroquery ----------------------------------------------------


async def test_query_criteria_gives_the_tutorials_five_rows_in_order(emulator: Emulator) -> None:
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, obs_collection="HST")

    assert list(table["obs_id"]) == [
        "o58701010",
        "o58701030",
        "o58701byq",
        "o58701020",
        "o58701bzq",
    ]
    assert list(table["obsid"]) == ["24919901", "24919903", "24454469", "24919902", "24454470"]
    assert table.colnames[:4] == ["dataproduct_type", "calib_level", "obs_collection", "obs_id"]
    assert table.colnames[-2:] == ["obsid", "objID"]
    assert math.isnan(table["em_min"][2]) and table["em_min"][0] == 115.0
    assert table["instrument_name"][0] == "STIS/FUV-MAMA"


async def test_products_of_first_two_are_thirty_and_filter_gives_the_six(
    emulator: Emulator,
) -> None:
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, obs_collection="HST")
    products = await asyncio.to_thread(obs.get_product_list, table[0:2])
    filtered = obs.filter_products(products, calib_level=[2], productType="SCIENCE")

    assert len(products) == 30
    assert dict(zip(filtered["productFilename"], filtered["size"], strict=True)) == SIX
    assert f"{sum(filtered['size']) / 10**6:.2f} MB" == "50.18 MB"
    assert all(s % 2880 == 0 for s in products["size"])
    assert set(products["productType"]) == {"SCIENCE", "AUXILIARY", "PREVIEW"}
    mrp = obs.filter_products(products, mrp_only=True)
    assert sorted(mrp["productFilename"]) == sorted(SIX)


async def test_criteria_match_lists_wildcards_and_ranges(emulator: Emulator) -> None:
    from astroquery.exceptions import NoResultsWarning

    obs = observations(emulator.url)
    by_list = await asyncio.to_thread(
        obs.query_criteria, proposal_id=["7291"], obs_id=["O58701010", "o58701030"]
    )
    wild = await asyncio.to_thread(obs.query_criteria, instrument_name="STIS/CCD*")
    ranged = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, t_exptime=[2000, 3000])
    with pytest.warns(NoResultsWarning):
        none = await asyncio.to_thread(obs.query_criteria, proposal_id=1)

    assert list(by_list["obs_id"]) == ["o58701010", "o58701030"]
    assert list(wild["obs_id"]) == ["o58701byq", "o58701bzq"]
    assert sorted(ranged["t_exptime"]) == [2175.0, 2947.0, 2947.0]
    assert len(none) == 0


async def test_unknown_criterion_is_refused_with_a_hint(emulator: Emulator) -> None:
    from astroquery.exceptions import InvalidQueryError

    obs = observations(emulator.url)
    with pytest.raises(InvalidQueryError, match="instrument_name"):
        await asyncio.to_thread(obs.query_criteria, proposal_id=7291, instrument_nam="STIS/CCD")


async def test_pages_are_real_and_astroquery_walks_them(emulator: Emulator) -> None:
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, pagesize=2)
    page3 = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, pagesize=2, page=3)

    assert list(table["obs_id"]) == [
        "o58701010",
        "o58701030",
        "o58701byq",
        "o58701020",
        "o58701bzq",
    ]
    assert len(invokes(emulator)) == 4  # pages 1, 2, 3 and then page 3 alone
    assert list(page3["obs_id"]) == ["o58701bzq"]


async def test_executing_then_complete(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.INVOKE_EXECUTING, match="Mast.Caom.Filtered", times=3))
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291)

    assert len(table) == 5
    assert len(invokes(emulator)) == 4


async def test_invoke_error_and_unknown_service_are_errors(emulator: Emulator) -> None:
    from astroquery.exceptions import RemoteServiceError

    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.*", message="db down"))
    obs = observations(emulator.url)
    with pytest.raises(RemoteServiceError, match="db down"):
        await asyncio.to_thread(obs.query_criteria, proposal_id=7291)
    with pytest.raises(RemoteServiceError, match="Unknown service"):
        await asyncio.to_thread(obs._portal_api_connection.service_request, "Mast.Nope", {})


async def test_status_fault_can_be_aimed_at_the_portal(emulator: Emulator) -> None:
    from requests import HTTPError

    emulator.faults.add(Fault(FaultKind.STATUS, status=500, endpoint="invoke"))
    obs = observations(emulator.url)
    with pytest.raises(HTTPError):
        await asyncio.to_thread(obs.query_criteria, proposal_id=7291)
    assert len(await asyncio.to_thread(obs.query_criteria, proposal_id=7291)) == 5


# -- downloads ---------------------------------------------------------------------------


async def test_download_products_writes_exact_valid_fits(
    emulator: Emulator, tmp_path: Path
) -> None:
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291, obs_id="o58701010")
    products = await asyncio.to_thread(obs.get_product_list, table)
    chosen = obs.filter_products(products, calib_level=[2], productType="SCIENCE")
    manifest = await asyncio.to_thread(
        obs.download_products, chosen, download_dir=str(tmp_path), verbose=False
    )

    assert set(manifest["Status"]) == {"COMPLETE"}
    for name in ("o58701010_x1d.fits", "o58701010_x2d.fits", "o58701010_flt.fits"):
        path = tmp_path / "mastDownload" / "HST" / "o58701010" / name
        assert path.stat().st_size == SIX[name]
        assert path.read_bytes() == emulator.body(f"mast:HST/product/{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with fits.open(path, checksum=True) as hdus:
                assert hdus[0].header["FILENAME"] == name
                assert hdus[0].header["ORIGIN"] == "hstsync MAST emulator"
    assert emulator.bytes_sent == sum(SIX[n] for n in SIX if n.startswith("o58701010"))


async def test_head_and_get_carry_validators(emulator: Emulator) -> None:
    status, headers, body = await fetch(emulator, X2D, method="HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == "14474880"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] and headers["Last-Modified"]
    assert "o58701010_x2d.fits" in headers["Content-Disposition"]

    status, got, body = await fetch(emulator, X1D)
    assert status == 200 and body == emulator.body(X1D)
    assert got["ETag"] == (await fetch(emulator, X1D, method="HEAD"))[1]["ETag"]
    assert "Content-Encoding" not in got


async def test_ranges_give_206_and_416(emulator: Emulator) -> None:
    whole = emulator.body(X1D)
    status, headers, body = await fetch(emulator, X1D, {"Range": "bytes=1000-"})
    assert status == 206 and body == whole[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    assert headers["Content-Length"] == str(len(whole) - 1000)

    status, headers, body = await fetch(emulator, X1D, {"Range": "bytes=10-19"})
    assert status == 206 and body == whole[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(whole)}"

    status, headers, _ = await fetch(emulator, X1D, {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"

    etag = headers.get("ETag") or (await fetch(emulator, X1D, method="HEAD"))[1]["ETag"]
    status, _, body = await fetch(emulator, X1D, {"Range": "bytes=5-", "If-Range": etag})
    assert status == 206 and body == whole[5:]
    status, _, body = await fetch(emulator, X1D, {"Range": "bytes=5-", "If-Range": '"stale"'})
    assert status == 200 and body == whole


async def test_unknown_uri_is_404(emulator: Emulator) -> None:
    status, _, _ = await fetch(emulator, "mast:HST/product/nothing_here.fits")
    assert status == 404


async def test_every_request_is_recorded_with_bytes_sent(emulator: Emulator) -> None:
    await fetch(emulator, X1D, {"Range": "bytes=77000-"})
    [record] = emulator.requests
    assert (record.method, record.path) == ("GET", "/api/v0.1/Download/file")
    assert record.query == f"uri={X1D}"
    assert record.headers["Range"] == "bytes=77000-"
    assert record.body_bytes_sent == 760


# -- faults --------------------------------------------------------------------------------


async def test_reset_cuts_after_exactly_after_bytes_once(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.RESET, match="*x2d.fits", after=5_000_000))
    length, got, error = await read_until_cut(emulator, X2D)

    assert error is not None
    assert length == 14474880 and got == emulator.body(X2D)[:5_000_000]
    assert (await fetch(emulator, X2D))[2] == emulator.body(X2D)  # times=1: spent


async def test_status_fault_with_retry_after_counts_down(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.STATUS, match="*x1d*", status=429, retry_after=7, times=2))
    first = await fetch(emulator, X1D)
    second = await fetch(emulator, X1D, method="HEAD")
    third = await fetch(emulator, X1D)

    assert (first[0], first[1]["Retry-After"]) == (429, "7")
    assert second[0] == 429
    assert third[0] == 200


async def test_ignore_range_answers_200_with_everything(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.IGNORE_RANGE, match="o58701010_x1d.fits", times=None))
    status, headers, body = await fetch(emulator, X1D, {"Range": "bytes=100-"})
    assert status == 200 and body == emulator.body(X1D) and "Content-Range" not in headers


async def test_short_body_promises_all_and_sends_part(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.SHORT_BODY, after=30_000))
    length, got, error = await read_until_cut(emulator, X1D)
    assert error is not None and length == 77760 and got == emulator.body(X1D)[:30_000]


async def test_wrong_size_is_consistent_in_every_header(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.WRONG_SIZE, after=2880, times=None))
    status, headers, body = await fetch(emulator, X1D)
    assert status == 200 and len(body) == 77760 + 2880 == int(headers["Content-Length"])
    assert body[:77760] == emulator.body(X1D)
    status, headers, body = await fetch(emulator, X1D, {"Range": "bytes=77760-"})
    assert status == 206 and len(body) == 2880
    assert headers["Content-Range"] == "bytes 77760-80639/80640"


async def test_stall_pauses_then_finishes(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.STALL, after=20_000, delay=0.4))
    gaps: list[float] = []
    got = bytearray()
    async with aiohttp.ClientSession() as session, session.get(download_url(emulator, X1D)) as r:
        last = time.monotonic()
        async for chunk in r.content.iter_any():
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            got += chunk
    assert bytes(got) == emulator.body(X1D)
    assert max(gaps) >= 0.35


async def test_slow_first_byte_delays_the_headers(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.SLOW_FIRST_BYTE, delay=0.3))
    began = time.monotonic()
    status, _, body = await fetch(emulator, X1D)
    assert status == 200 and body == emulator.body(X1D)
    assert time.monotonic() - began >= 0.3


async def test_corrupt_flips_exactly_one_byte(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.CORRUPT, match="o58701010_x1d.fits", after=40_000))
    _, _, body = await fetch(emulator, X1D)
    good = emulator.body(X1D)
    assert len(body) == len(good)
    assert [i for i in range(len(good)) if body[i] != good[i]] == [40_000]


async def test_fault_match_is_on_the_file_name(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.STATUS, match="*_flt.fits", status=503, times=None))
    assert (await fetch(emulator, X1D))[0] == 200
    assert (await fetch(emulator, "mast:HST/product/o58701010_flt.fits", method="HEAD"))[0] == 503
    emulator.faults.clear()
    assert (await fetch(emulator, "mast:HST/product/o58701010_flt.fits", method="HEAD"))[0] == 200


# -- rights, sessions, pacing ---------------------------------------------------------------


async def test_exclusive_access_needs_a_valid_token() -> None:
    catalogue = default_catalogue()
    catalogue.add_product("o58701020", "o58701020_sx1.fits", 5760, data_rights=EXCLUSIVE_ACCESS)
    uri = "mast:HST/product/o58701020_sx1.fits"
    async with Emulator(catalogue, tokens={"s3cret": "alice"}) as emu:
        assert (await fetch(emu, uri))[0] == 401
        assert (await fetch(emu, uri, {"Authorization": "token wrong"}))[0] == 401
        assert (await fetch(emu, uri, {"Authorization": "token s3cret"}))[2] == emu.body(uri)
        assert (await fetch(emu, uri, {"Cookie": "mast_token=s3cret"}))[0] == 200

        obs = observations(emu.url)
        assert (await asyncio.to_thread(obs.session_info, verbose=False))["anon"] is True
        await asyncio.to_thread(obs.login, token="s3cret")  # raises if refused
        info = await asyncio.to_thread(obs.session_info, verbose=False)
        assert (info["anon"], info["ezid"], info["attrib"]["display_name"]) == (
            False,
            "alice",
            "alice",
        )
        assert "mast:exclusive_access" in info["scopes"]


async def test_rate_limits_each_response_and_latency_delays_it() -> None:
    async with Emulator(rate=1_000_000, latency=0.2) as emu:
        began = time.monotonic()
        _, _, body = await fetch(emu, "mast:HST/product/o58701010_wav.fits")  # 2128320 bytes
        took = time.monotonic() - began
    assert len(body) == 2128320
    # at 1 MB/s the body alone takes 2.1 s; no upper bound: a loaded machine is slower
    assert took >= 2.0


# -- the catalogue, growing and changing ------------------------------------------------------


async def test_programs_added_while_running_are_served(emulator: Emulator) -> None:
    made = emulator.catalogue.add_program(90001, files=10, size=82080)
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=90001)
    products = await asyncio.to_thread(obs.get_product_list, table)
    chosen = obs.filter_products(products, calib_level=[2], productType="SCIENCE")

    assert len(table) == 3 and len(chosen) == 10
    assert sorted(chosen["dataURI"]) == sorted(p.data_uri for p in made)
    assert set(chosen["size"]) == {82080}
    status, _, body = await fetch(emulator, made[0].data_uri)
    assert status == 200 and len(body) == 82080
    again = Catalogue()
    assert [p.data_uri for p in again.add_program(90001, files=10, size=82080)] == [
        p.data_uri for p in made
    ]


async def test_changed_product_gets_a_new_body_and_etag(emulator: Emulator) -> None:
    before = await fetch(emulator, X1D, method="HEAD")
    emulator.catalogue.update_product("o58701010_x1d.fits", size=80640)
    after = await fetch(emulator, X1D)
    assert after[1]["Content-Length"] == "80640" and after[1]["ETag"] != before[1]["ETag"]
    with fits.open(io.BytesIO(after[2]), checksum=True) as hdus:
        assert hdus[0].header["NAXIS1"] == 80640 - 2880

    emulator.catalogue.set_data_rights(7291, EXCLUSIVE_ACCESS)
    assert (await fetch(emulator, X1D))[0] == 401


def test_run_in_thread_serves_sync_callers() -> None:
    with run_in_thread(default_catalogue()) as emu:
        obs = observations(emu.url)
        assert len(obs.query_criteria(proposal_id=7291)) == 5
        assert emu.requests


# -- bodies ------------------------------------------------------------------------------


def test_bodies_are_random_access_and_not_block_periodic() -> None:
    bodies = Bodies()
    body = bodies.get(X2D, 14474880)
    whole = body.all()
    for start, n in [(0, 10), (2870, 30), (PATTERN_LENGTH * 3 - 5, 1 << 20), (14474880 - 7, 7)]:
        assert body.read(start, n) == whole[start : start + n]
    data = whole[2880:]
    for shift in (1, 2, 4, 2880, 4096, 65536):
        assert data[shift : shift + 100_000] != data[:100_000]
    assert bodies.get(X1D, 77760).all() != bodies.get(X2D, 77760).all()


# -- the command line -----------------------------------------------------------------------


def test_cli_specs_parse() -> None:
    fault = parse_fault("reset:*x2d*:5000000")
    assert (fault.kind, fault.match, fault.after, fault.times) == (
        FaultKind.RESET,
        "*x2d*",
        5_000_000,
        1,
    )
    fault = parse_fault("status:*:status=429:retry_after=2:times=forever")
    assert (fault.status, fault.retry_after, fault.times) == (429, 2.0, None)
    program = parse_program("90001:260:82080")
    assert (program.proposal_id, program.files, program.size) == ("90001", 260, 82080)


async def test_cli_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hstsync.emulator", "--program", "90001:5:5760",
        "--fault", "status:*flt*:status=503",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("MAST emulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/whoami") as resp:
                assert (await resp.json())["anon"] is True
            async with session.head(f"{url}/api/v0.1/Download/file?uri={X1D}") as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_client_hanging_up_before_the_answer_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
):
    # aria2c and parfive drop connections they no longer need, some while the emulator
    # is still waiting out its latency: that must not log an error (a traceback).
    async with Emulator(default_catalogue(), latency=0.2) as emu:
        url = yarl.URL(emu.url)
        _, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"GET /api/v0.1/Download/file?uri=mast:HST/product/o58701010_x1d.fits HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n\r\n"
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.4)  # past the latency: the answer meets a closed socket
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
