"""The archive changes its mind, and the emulator with it: files reprocessed under the
same name (new bytes, often the same size), products withdrawn from the lists, HTTP
validators sent or not, and the body bytes counted; all over real HTTP, astroquery
where it is what astroquery sees, and the admin calls for an emulator in another
process."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import warnings
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from astropy.io import fits

from hstsync.emulator import Emulator, default_catalogue
from hstsync.emulator.cli import parse_product_quirk
from tests.emulator_helpers import download_url, fetch, observations

REPO = str(Path(__file__).resolve().parents[1])
X1D = "mast:HST/product/o58701010_x1d.fits"  # 77760 bytes, valid checksums
X2D = "mast:HST/product/o58701010_x2d.fits"  # 14474880 bytes
FLC = "mast:HST/product/jbqx01kcq_flc.fits"  # listed under four observations (12062)
JPG = "mast:HST/product/hst_12062_01_acs_wfc_f606w_jbqx01_drc.jpg"


def header_of(body: bytes) -> fits.Header:
    """The primary header, checksums verified: any warning (a bad CHECKSUM or
    DATASUM among them) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(io.BytesIO(body), checksum=True) as hdus:
            hdus.verify("exception")
            return hdus[0].header.copy()


async def product_uris(emu: Emulator, obsids: list[str]) -> list[str]:
    obs = observations(emu.url)
    products = await asyncio.to_thread(obs.get_product_list, obsids)
    return [str(uri) for uri in products["dataURI"]]


# -- reprocessing ----------------------------------------------------------------------------


async def test_reprocessing_keeps_name_and_size_and_changes_header_and_data(
    emulator: Emulator,
) -> None:
    status, first_headers, first = await fetch(emulator, X1D)
    assert status == 200 and "DATE" not in header_of(first)  # the original bodies

    emulator.catalogue.reprocess("o58701010_x1d.fits")
    status, second_headers, second = await fetch(emulator, X1D)
    emulator.catalogue.reprocess(X1D)
    status, third_headers, third = await fetch(emulator, X1D)

    assert status == 200
    assert len(first) == len(second) == len(third) == 77760
    assert len({first, second, third}) == 3
    one, two = header_of(second), header_of(third)
    assert one["DATE"] != two["DATE"] and one["DATE"] < two["DATE"]
    assert (one["CAL_VER"], two["CAL_VER"]) == ("1.0.1", "1.0.2")
    assert one["BIASFILE"] != two["BIASFILE"] and one["FLATFILE"] != two["FLATFILE"]
    assert one["CHECKSUM"] != two["CHECKSUM"] and one["DATASUM"] != two["DATASUM"]
    # the data changed too, not only the header
    assert first[2880:] != second[2880:] != third[2880:]
    etags = {h["ETag"] for h in (first_headers, second_headers, third_headers)}
    assert len(etags) == 3
    modified = [h["Last-Modified"] for h in (first_headers, second_headers, third_headers)]
    assert len(set(modified)) == 3
    # what is served now, and what the earlier generations were
    assert emulator.body(X1D) == third
    assert emulator.body(X1D, generation=0) == first
    assert emulator.body(X1D, generation=1) == second
    with pytest.raises(KeyError):
        emulator.body(X1D, generation=7)
    # the catalogue still lists one product under the same name, URI and size
    obs = observations(emulator.url)
    products = await asyncio.to_thread(obs.get_product_list, "24919901")
    row = next(r for r in products if r["dataURI"] == X1D)
    assert (row["productFilename"], row["size"]) == ("o58701010_x1d.fits", 77760)


async def test_reprocessing_to_a_new_size(emulator: Emulator) -> None:
    product = emulator.catalogue.reprocess(X1D, size=80640)
    assert (product.size, product.generation) == (80640, 1)

    status, headers, body = await fetch(emulator, X1D)
    assert status == 200 and headers["Content-Length"] == "80640" and len(body) == 80640
    assert header_of(body)["NAXIS1"] == 80640 - 2880
    assert len(emulator.body(X1D, generation=0)) == 77760
    obs = observations(emulator.url)
    products = await asyncio.to_thread(obs.get_product_list, "24919901")
    assert next(r for r in products if r["dataURI"] == X1D)["size"] == 80640


async def test_reprocessing_for_reference_files_only_keeps_cal_ver(emulator: Emulator) -> None:
    emulator.catalogue.reprocess(X1D)
    before = header_of(emulator.body(X1D))
    emulator.catalogue.reprocess(X1D, software=False)
    after = header_of((await fetch(emulator, X1D))[2])
    assert after["CAL_VER"] == before["CAL_VER"]
    assert after["DATE"] != before["DATE"] and after["FLATFILE"] != before["FLATFILE"]


async def test_reprocessing_changes_previews_and_odd_bodies_too(emulator: Emulator) -> None:
    jpeg = emulator.body(JPG)
    odd = emulator.body("mast:HST/product/jbqx01kcq_flt.fits")
    emulator.catalogue.reprocess(JPG)
    emulator.catalogue.reprocess("jbqx01kcq_flt.fits")

    new_jpeg = (await fetch(emulator, JPG))[2]
    assert len(new_jpeg) == len(jpeg) == 4321 and new_jpeg != jpeg
    assert new_jpeg[:4] == b"\xff\xd8\xff\xe0" and new_jpeg[-2:] == b"\xff\xd9"
    new_odd = emulator.body("mast:HST/product/jbqx01kcq_flt.fits")
    assert len(new_odd) == len(odd) and new_odd != odd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the odd header is odd on purpose
        with fits.open(io.BytesIO(new_odd)) as hdus:
            assert hdus[0].header["CAL_VER"] == "1.0.1" and "CHECKSUM" not in hdus[0].header


async def test_the_bucket_serves_the_reprocessed_file(emulator: Emulator) -> None:
    emulator.catalogue.reprocess(X1D)
    url = f"{emulator.cloud_url}/hst/public/o587/o58701010/o58701010_x1d.fits"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200 and await resp.read() == emulator.body(X1D)


# -- withdrawal ------------------------------------------------------------------------------


async def test_a_withdrawn_product_leaves_every_list_and_is_still_served(
    emulator: Emulator,
) -> None:
    obsids = ["2003400100", "2003400101", "2003400103", "2003400104"]
    assert (await product_uris(emulator, obsids)).count(FLC) == 4

    emulator.catalogue.withdraw("jbqx01kcq_flc.fits")

    assert FLC not in await product_uris(emulator, obsids)
    assert FLC not in [p.data_uri for p in emulator.catalogue.products()]
    assert [p.data_uri for p in emulator.catalogue.withdrawn()] == [FLC]
    status, _, body = await fetch(emulator, FLC)
    assert status == 200 and body == emulator.body(FLC)

    emulator.catalogue.restore(FLC)
    assert (await product_uris(emulator, obsids)).count(FLC) == 4


async def test_a_withdrawn_product_can_answer_404_everywhere(emulator: Emulator) -> None:
    emulator.catalogue.withdraw(X1D, served=False)

    assert X1D not in await product_uris(emulator, ["24919901"])
    assert (await fetch(emulator, X1D))[0] == 404
    assert (await fetch(emulator, X1D, method="HEAD"))[0] == 404
    url = f"{emulator.cloud_url}/hst/public/o587/o58701010/o58701010_x1d.fits"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 404
    # the astroquery view of the whole program: the other products are all there
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id="7291")
    products = await asyncio.to_thread(obs.get_product_list, table)
    assert len(products) == 2 * 15 + 15 + 2 * 4 - 1


# -- validators and conditional requests -----------------------------------------------------


async def test_if_none_match_answers_304_without_a_body(emulator: Emulator) -> None:
    _, headers, _ = await fetch(emulator, X1D, method="HEAD")
    etag = headers["ETag"]
    before = len(emulator.requests)

    for value in (etag, f'"other", {etag}', "*", f"W/{etag}"):
        status, answer, body = await fetch(emulator, X1D, {"If-None-Match": value})
        assert (status, body) == (304, b""), value
        assert answer["ETag"] == etag and answer["Last-Modified"] == headers["Last-Modified"]
    assert (await fetch(emulator, X1D, {"If-None-Match": etag}, method="HEAD"))[0] == 304
    status, _, body = await fetch(emulator, X1D, {"If-None-Match": '"other"'})
    assert status == 200 and len(body) == 77760

    records = emulator.requests[before:]
    assert [r.status for r in records] == [304, 304, 304, 304, 304, 200]
    assert all(r.data_uri == X1D for r in records)
    assert [r.body_bytes_sent for r in records] == [0, 0, 0, 0, 0, 77760]


async def test_if_modified_since_answers_304_unless_if_none_match_says_otherwise(
    emulator: Emulator,
) -> None:
    _, headers, _ = await fetch(emulator, X1D, method="HEAD")
    last = headers["Last-Modified"]
    earlier = formatdate(946_684_800 - 3600, usegmt=True)

    assert (await fetch(emulator, X1D, {"If-Modified-Since": last}))[0] == 304
    assert (await fetch(emulator, X1D, {"If-Modified-Since": earlier}))[0] == 200
    assert (await fetch(emulator, X1D, {"If-Modified-Since": "yesterday"}))[0] == 200
    # If-None-Match takes precedence (RFC 9110 13.2.2): a changed ETag is a 200
    both = {"If-Modified-Since": last, "If-None-Match": '"not-the-tag"'}
    assert (await fetch(emulator, X1D, both))[0] == 200

    emulator.catalogue.reprocess(X1D)
    status, _, body = await fetch(emulator, X1D, {"If-Modified-Since": last})
    assert status == 200 and body == emulator.body(X1D)
    status, _, body = await fetch(emulator, X1D, {"If-None-Match": headers["ETag"]})
    assert status == 200 and body == emulator.body(X1D)


async def test_without_validators_nothing_is_conditional() -> None:
    async with Emulator(default_catalogue(), validators=False) as emu:
        status, headers, body = await fetch(emu, X1D)
        assert status == 200 and "ETag" not in headers and "Last-Modified" not in headers
        last = formatdate(2_000_000_000, usegmt=True)
        for conditional in ({"If-None-Match": "*"}, {"If-Modified-Since": last}):
            assert (await fetch(emu, X1D, conditional))[:3:2] == (200, body)
        # If-Range can never match: a resume asking for it gets the whole body
        for validator in ('"anything"', last):
            status, _, whole = await fetch(emu, X1D, {"Range": "bytes=100-", "If-Range": validator})
            assert (status, whole) == (200, body)
        status, headers, tail = await fetch(emu, X1D, {"Range": "bytes=100-"})
        assert (status, tail) == (206, body[100:])
        assert headers["Content-Range"] == "bytes 100-77759/77760"

        emu.validators = True  # switched on while running
        _, headers, _ = await fetch(emu, X1D, method="HEAD")
        assert (await fetch(emu, X1D, {"If-None-Match": headers["ETag"]}))[0] == 304


async def test_validators_can_be_off_for_one_product(emulator: Emulator) -> None:
    emulator.catalogue.set_product_quirks("o58701010_x1d.fits", validators=False)
    assert "ETag" not in (await fetch(emulator, X1D, method="HEAD"))[1]
    assert "ETag" in (await fetch(emulator, X2D, method="HEAD"))[1]
    spec = parse_product_quirk("*_x1d.fits:no-validators")
    assert spec.options == {"validators": False}


async def test_if_range_resumes_only_on_the_current_etag(emulator: Emulator) -> None:
    _, headers, _ = await fetch(emulator, X1D, method="HEAD")
    resume = {"Range": "bytes=1000-", "If-Range": headers["ETag"]}
    status, _, tail = await fetch(emulator, X1D, resume)
    assert status == 206 and tail == emulator.body(X1D)[1000:]

    emulator.catalogue.reprocess(X1D)
    status, _, whole = await fetch(emulator, X1D, resume)
    assert status == 200 and whole == emulator.body(X1D)


# -- bytes served ----------------------------------------------------------------------------


async def test_body_bytes_are_counted_per_file_and_in_total(emulator: Emulator) -> None:
    await fetch(emulator, X1D)
    await fetch(emulator, X1D, method="HEAD")
    await fetch(emulator, X2D, {"Range": "bytes=0-65535"})  # a head read
    await fetch(emulator, X2D, {"Range": "bytes=-100"})
    _, headers, _ = await fetch(emulator, X1D, method="HEAD")
    await fetch(emulator, X1D, {"If-None-Match": headers["ETag"]})

    assert emulator.served(X1D) == 77760
    assert emulator.served(X2D) == 65536 + 100
    assert emulator.served() == emulator.bytes_sent == 77760 + 65536 + 100
    assert emulator.bytes_served == {X1D: 77760, X2D: 65636}
    ranged = [r for r in emulator.requests if r.data_uri == X2D]
    assert [(r.status, r.body_bytes_sent) for r in ranged] == [(206, 65536), (206, 100)]


async def test_a_client_that_hangs_up_is_counted_for_what_was_written(
    emulator: Emulator,
) -> None:
    emulator.rate = 4e6  # paced, so the server is mid-body when the client leaves
    async with (
        aiohttp.ClientSession() as session,
        session.get(download_url(emulator, X2D)) as resp,
    ):
        got = await resp.content.readexactly(300_000)
        assert got == emulator.body_file(X2D).read(0, 300_000)
        resp.close()
    await asyncio.sleep(0.5)  # the server notices
    record = next(r for r in emulator.requests if r.data_uri == X2D)
    assert 300_000 <= record.body_bytes_sent < 14474880
    assert emulator.served(X2D) == record.body_bytes_sent


# -- the admin calls -------------------------------------------------------------------------


async def admin(
    session: aiohttp.ClientSession, url: str, name: str, body: Any = None
) -> tuple[int, Any]:
    async with session.post(f"{url}/emulator/admin/{name}", json=body) as resp:
        return resp.status, await resp.json()


async def test_admin_calls_change_the_archive(emulator: Emulator) -> None:
    old = emulator.body(X1D)
    async with aiohttp.ClientSession() as session:
        status, answer = await admin(session, emulator.url, "reprocess", {"key": X1D})
        assert status == 200
        assert answer["dataURI"] == X1D and answer["generation"] == 1
        assert answer["size"] == 77760 and answer["cal_ver"] == "1.0.1"
        status, answer = await admin(
            session, emulator.url, "reprocess", {"key": "o58701010_x1d.fits", "size": 80640}
        )
        assert (status, answer["generation"], answer["size"]) == (200, 2, 80640)
        body = (await fetch(emulator, X1D))[2]
        assert len(body) == 80640 and body != old

        status, answer = await admin(session, emulator.url, "withdraw", {"key": X1D})
        assert (status, answer["withdrawn"], answer["served"]) == (200, True, True)
        assert X1D not in await product_uris(emulator, ["24919901"])
        await admin(session, emulator.url, "withdraw", {"key": X1D, "served": False})
        assert (await fetch(emulator, X1D))[0] == 404
        await admin(session, emulator.url, "restore", {"key": X1D})
        assert X1D in await product_uris(emulator, ["24919901"])

        assert await admin(session, emulator.url, "validators", {"on": False}) == (
            200,
            {"validators": False},
        )
        assert "ETag" not in (await fetch(emulator, X2D, method="HEAD"))[1]
        await admin(session, emulator.url, "validators", {"on": True})
        status, answer = await admin(session, emulator.url, "validators", {"on": False, "key": X2D})
        assert (status, answer["validators"]) == (200, False)
        assert "ETag" not in (await fetch(emulator, X2D, method="HEAD"))[1]
        assert "ETag" in (await fetch(emulator, X1D, method="HEAD"))[1]

        async with session.get(f"{emulator.url}/emulator/admin/served") as resp:
            served = await resp.json()
        assert served == {"total": emulator.bytes_sent, "by_uri": {X1D: 80640}}

        assert (await admin(session, emulator.url, "reprocess", {"key": "nope.fits"}))[0] == 404
        assert (await admin(session, emulator.url, "reprocess", {}))[0] == 400
        assert (await admin(session, emulator.url, "reprocess", [1]))[0] == 400
        assert (await admin(session, emulator.url, "validators", {"on": "no"}))[0] == 400
        bad = {"key": X1D, "size": -1}
        assert (await admin(session, emulator.url, "reprocess", bad))[0] == 400
        # the cdn listener has no admin calls
        async with session.post(f"{emulator.cdn_url}/emulator/admin/reprocess") as resp:
            assert resp.status == 404
    # the control calls are not the archive's traffic
    assert not [r for r in emulator.requests if r.path.startswith("/emulator/")]


async def test_admin_calls_drive_an_emulator_in_another_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hstsync.emulator", "--no-validators",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.split()[-1]
        file_url = f"{url}/api/v0.1/Download/file?uri={X1D}"
        async with aiohttp.ClientSession() as session:
            async with session.get(file_url) as resp:
                assert "ETag" not in resp.headers
                first = await resp.read()
            assert (await admin(session, url, "validators", {"on": True}))[0] == 200
            assert (await admin(session, url, "reprocess", {"key": X1D}))[0] == 200
            async with session.get(file_url) as resp:
                assert resp.headers["ETag"]
                second = await resp.read()
            assert len(second) == len(first) and second != first
            async with session.get(f"{url}/emulator/admin/served") as resp:
                assert (await resp.json())["by_uri"] == {X1D: 2 * 77760}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
