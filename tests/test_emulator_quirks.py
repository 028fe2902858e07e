"""The emulator really serves the real archive's habits (docs/emulator.md): unmodified
astroquery and plain aiohttp see repeats, null cells, odd size types, chunked and
range-less files, odd FITS headers, a slow, paged and hanging portal, and redirects."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from hstsync.emulator import (
    REALISTIC_PROPOSAL,
    BodyStyle,
    Catalogue,
    Emulator,
    Fault,
    FaultKind,
    PortalQuirks,
    default_catalogue,
    expected_products,
)
from hstsync.emulator.cli import parse_fault, parse_product_quirk
from tests.emulator_helpers import download_url, fetch, invokes, observations

RAW = "mast:HST/product/o58701010_raw.fits"


async def realistic_products(emu: Emulator) -> Any:
    obs = observations(emu.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=REALISTIC_PROPOSAL)
    return await asyncio.to_thread(obs.get_product_list, table)


def row_of(products: Any, filename: str) -> Any:
    return next(r for r in products if r["productFilename"] == filename)


# -- 1. repeats, differing obs_ids, parent_obsid 0 ------------------------------------------


async def test_realistic_program_lists_about_half_its_rows_twice(emulator: Emulator) -> None:
    products = await realistic_products(emulator)
    counts = Counter(products["dataURI"])

    assert len(products) == 26 and len(counts) == 14
    assert sum(n - 1 for n in counts.values()) == 12  # repeats of a dataURI already listed
    assert set(counts) == set(expected_products())
    # a HAP row lists a member's file: obsID is the HAP's, parent_obsid the owner's
    flc = [r for r in products if r["productFilename"] == "jbqx01kcq_flc.fits"]
    assert len({r["obsID"] for r in flc}) == 4
    assert {r["parent_obsid"] for r in flc} == {"2003400101"}


async def test_obs_id_can_differ_from_the_observation_and_the_file_root(
    emulator: Emulator,
) -> None:
    products = await realistic_products(emulator)
    drz = row_of(products, "jbqx01021_drz.fits")
    drc = row_of(products, "jbqx01021_drc.fits")
    hap = row_of(products, "hst_12062_01_acs_wfc_f606w_jbqx01_drc.fits")

    assert (drz["obsID"], drz["obs_id"]) == ("2003400100", "jbqx01021")  # under jbqx01020
    assert drc["obs_id"] == "jbqx01020"  # while its name says jbqx01021
    assert hap["parent_obsid"] == "0"


# -- 2. null cells, size types, wrong sizes -------------------------------------------------


async def test_null_cells_arrive_masked() -> None:
    catalogue = default_catalogue()
    catalogue.set_product_quirks(
        "o58701010_x1d.fits",
        cells={"size": None, "obs_id": None, "dataRights": None, "description": None},
    )
    async with Emulator(catalogue) as emu:
        obs = observations(emu.url)
        products = await asyncio.to_thread(obs.get_product_list, "24919901")
    x1d = row_of(products, "o58701010_x1d.fits")
    for column in ("size", "obs_id", "dataRights", "description"):
        assert np.ma.is_masked(x1d[column]), column
    assert str(x1d["size"]) == "--"
    assert not np.ma.is_masked(row_of(products, "o58701010_x2d.fits")["size"])


@pytest.mark.parametrize(
    ("size_type", "kind", "value"),
    [("int", "i", 77760), ("float", "f", 77760.0), ("string", "U", "77760")],
)
async def test_size_column_takes_the_declared_type(size_type: str, kind: str, value: Any) -> None:
    async with Emulator(default_catalogue(), quirks=PortalQuirks(size_types=(size_type,))) as emu:
        obs = observations(emu.url)
        products = await asyncio.to_thread(obs.get_product_list, "24919901")
    assert products["size"].dtype.kind == kind
    assert row_of(products, "o58701010_x1d.fits")["size"] == value


async def test_realistic_sizes_are_float_with_masked_and_wrong_cells(emulator: Emulator) -> None:
    products = await realistic_products(emulator)
    true = {uri: len(p.body) for uri, p in expected_products().items()}

    assert products["size"].dtype.kind == "f"  # pages declared int and float, stacked
    assert np.ma.is_masked(row_of(products, "jbqx01kdq_raw.fits")["size"])
    spt = row_of(products, "jbqx01kcq_spt.fits")
    assert np.ma.is_masked(spt["dataRights"]) and np.ma.is_masked(spt["description"])
    too_large = row_of(products, "jbqx01kdq_flt.fits")
    too_small = row_of(products, "jbqx01kdq_flc.fits")
    assert too_large["size"] > true[too_large["dataURI"]]
    assert too_small["size"] < true[too_small["dataURI"]]


async def test_size_values_go_out_as_floats_and_strings(emulator: Emulator) -> None:
    form = {
        "request": '{"service": "Mast.Caom.Products", "params": {"obsid": "2003400101,2003400102,'
        '2003400104"}, "format": "json", "pagesize": 50000, "page": 1}'
    }
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # two EXECUTING rounds first
            async with session.post(f"{emulator.url}/api/v0/invoke", data=form) as resp:
                reply = await resp.json()
    assert reply["status"] == "COMPLETE"
    sizes = {r["productFilename"]: r["size"] for r in reply["data"]}
    assert sizes["jbqx01kcq_flc.fits"] == "11520"
    assert sizes["jbqx01kdq_trl.fits"] == 5760.0 and isinstance(sizes["jbqx01kdq_trl.fits"], float)
    assert sizes["jbqx01kdq_raw.fits"] is None
    assert reply["paging"] == {
        "page": 1,
        "pageSize": 10,
        "pagesFiltered": 2,
        "rows": 10,
        "rowsFiltered": 12,
        "rowsTotal": 12,
    }


# -- 3. chunked, no ranges ------------------------------------------------------------------


async def test_chunked_file_has_no_content_length(emulator: Emulator) -> None:
    uri = "mast:HST/product/jbqx01020_asn.fits"
    status, headers, body = await fetch(emulator, uri)
    assert status == 200 and body == emulator.body(uri)
    assert "Content-Length" not in headers and headers["Transfer-Encoding"] == "chunked"
    status, headers, _ = await fetch(emulator, uri, method="HEAD")
    assert status == 200 and "Content-Length" not in headers


async def test_file_without_range_support_answers_200_to_a_range(emulator: Emulator) -> None:
    uri = "mast:HST/product/jbqx01kcq_raw.fits"
    status, headers, body = await fetch(emulator, uri, {"Range": "bytes=100-"})
    assert status == 200 and body == emulator.body(uri)
    assert "Accept-Ranges" not in headers and "Content-Range" not in headers
    assert headers["Content-Length"] == str(len(body))


# -- 4. real-world FITS and non-FITS bodies -----------------------------------------------------


async def test_odd_header_warns_but_reads(emulator: Emulator) -> None:
    _, _, body = await fetch(emulator, "mast:HST/product/jbqx01kcq_flt.fits")
    with (
        pytest.warns(AstropyUserWarning, match="null bytes"),
        fits.open(io.BytesIO(body), checksum=True) as hdus,
    ):
        header = hdus[0].header
        assert header["DATE-OBS"] == "2010-10-27" and header["EXPTIME"] == 339.0
        assert len(header["HISTNOTE"]) > 68  # continued over CONTINUE cards
        assert "CHECKSUM" not in header
        assert len(hdus[0].data) == len(body) - 2880
    assert body[:2880].rstrip(b"\0").endswith(b" ") and body[2879] == 0


async def test_checksummed_and_checksumless_files_open_cleanly(emulator: Emulator) -> None:
    for name, has_checksum in [("jbqx01021_drc.fits", True), ("jbqx01kdq_flc.fits", False)]:
        _, _, body = await fetch(emulator, f"mast:HST/product/{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with fits.open(io.BytesIO(body), checksum=True) as hdus:
                assert ("CHECKSUM" in hdus[0].header) is has_checksum
                assert hdus[0].header["FILENAME"] == name


async def test_preview_is_a_jpeg_not_fits(emulator: Emulator) -> None:
    uri = "mast:HST/product/hst_12062_01_acs_wfc_f606w_jbqx01_drc.jpg"
    _, headers, body = await fetch(emulator, uri)
    assert len(body) == 4321 == int(headers["Content-Length"])
    assert body[:4] == b"\xff\xd8\xff\xe0" and body[6:10] == b"JFIF" and body[-2:] == b"\xff\xd9"
    assert body == emulator.body(uri)
    _, _, tail = await fetch(emulator, uri, {"Range": "bytes=4300-"})
    assert tail == body[4300:]


# -- 5. a slow, paged, hanging, failing portal -------------------------------------------------


async def test_realistic_program_pages_and_answers_executing_first(emulator: Emulator) -> None:
    await realistic_products(emulator)
    bodies = [r.body for r in emulator.requests if r.path == "/api/v0/invoke"]
    products = [b for b in bodies if "Mast.Caom.Products" in b]
    pages = Counter(b.split("page%22%3A%20")[-1].split("%2C")[0] for b in products)

    assert pages == {"1": 3, "2": 3, "3": 3}  # three pages, each EXECUTING twice first
    assert len(bodies) - len(products) == 3  # the observation query: EXECUTING twice too


async def test_product_lookup_latency_grows_with_the_obsids_asked_for() -> None:
    async with Emulator(default_catalogue(), quirks=PortalQuirks(latency_per_obsid=0.2)) as emu:
        obs = observations(emu.url)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.to_thread(obs.get_product_list, "24919901")
        one = loop.time() - began
        began = loop.time()
        await asyncio.to_thread(obs.get_product_list, ["24919901", "24919903", "24919902"])
        three = loop.time() - began
    assert one >= 0.2 and three >= 0.6


async def test_hung_lookup_never_answers_and_the_next_one_does(emulator: Emulator) -> None:
    emulator.faults.add(Fault(FaultKind.HANG, match="Mast.Caom.Products"))
    obs = observations(emulator.url)
    table = await asyncio.to_thread(obs.query_criteria, proposal_id=7291)
    session = obs._portal_api_connection._session
    original = session.request

    def with_timeout(*args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = 0.5
        return original(*args, **kwargs)

    session.request = with_timeout  # astroquery's own calls have no timeout at all
    with pytest.raises(requests.exceptions.ReadTimeout):
        await asyncio.to_thread(obs.get_product_list, table[0:1])
    session.request = original
    assert len(await asyncio.to_thread(obs.get_product_list, table[0:1])) == 15


async def test_a_later_lookup_can_be_made_to_fail(emulator: Emulator) -> None:
    from astroquery.exceptions import RemoteServiceError

    emulator.faults.add(Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Products", skip=1))
    emulator.faults.add(Fault(FaultKind.STATUS, status=502, endpoint="invoke", skip=2))
    obs = observations(emulator.url)
    assert len(await asyncio.to_thread(obs.get_product_list, "24919901")) == 15
    with pytest.raises(RemoteServiceError, match="Emulated MAST service error"):
        await asyncio.to_thread(obs.get_product_list, "24919901")
    with pytest.raises(requests.HTTPError, match="502"):
        await asyncio.to_thread(obs.get_product_list, "24919901")
    assert len(await asyncio.to_thread(obs.get_product_list, "24919901")) == 15


async def test_emulator_wide_page_rows_make_astroquery_walk_pages() -> None:
    async with Emulator(default_catalogue(), quirks=PortalQuirks(page_rows=7)) as emu:
        obs = observations(emu.url)
        products = await asyncio.to_thread(obs.get_product_list, ["24919901", "24919903"])
        assert len(products) == 30 and len(set(products["dataURI"])) == 30
        assert len([b for b in invokes(emu)]) == 5  # ceil(30 / 7) pages


# -- 6. redirects to another host --------------------------------------------------------------


async def test_redirect_lands_on_the_cdn_listener_and_shows_what_followed(
    emulator: Emulator,
) -> None:
    uri = "mast:HST/product/jbqx01021_drz.fits"
    async with (
        aiohttp.ClientSession() as session,
        session.get(download_url(emulator, uri), headers={"Authorization": "token s3cret"}) as resp,
    ):
        body = await resp.read()
        history = [h.status for h in resp.history]
        final = resp.url
    assert history == [302] and body == emulator.body(uri)
    assert (final.host, final.port) == ("localhost", emulator.cdn_port)
    assert emulator.cdn_port != emulator.port
    [archive, cdn] = emulator.requests
    assert (archive.site, archive.port) == ("archive", emulator.port)
    assert (cdn.site, cdn.port) == ("cdn", emulator.cdn_port)
    # aiohttp drops Authorization when a redirect changes host: the record shows it
    assert "Authorization" in archive.headers and "Authorization" not in cdn.headers


async def test_cdn_refuses_an_unsigned_url(emulator: Emulator) -> None:
    uri = "mast:HST/product/jbqx01021_drz.fits"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.cdn_url}/cdn/HST/product/jbqx01021_drz.fits?uri={uri}") as resp,
    ):
        assert resp.status == 403


async def test_astroquery_downloads_the_realistic_program_byte_identical(
    emulator: Emulator, tmp_path: Path
) -> None:
    products = await realistic_products(emulator)
    obs = observations(emulator.url)
    manifest = await asyncio.to_thread(
        obs.download_products, products, download_dir=str(tmp_path), verbose=False
    )
    assert set(manifest["Status"]) == {"COMPLETE"} and len(manifest) == 14
    for expected in expected_products(emulator.catalogue).values():
        assert (tmp_path / expected.relpath).read_bytes() == expected.body
    assert {r.site for r in emulator.requests} == {"archive", "cdn"}


# -- the switches themselves ---------------------------------------------------------------------


def test_expected_products_are_the_unique_files_with_their_paths() -> None:
    expected = expected_products()
    assert len(expected) == 14
    drz = expected["mast:HST/product/jbqx01021_drz.fits"]
    assert drz.relpath == "mastDownload/HST/jbqx01021/jbqx01021_drz.fits"
    assert len(drz.body) == 14400
    assert expected_products(default_catalogue()) == expected


def test_product_quirks_parse_from_the_command_line() -> None:
    spec = parse_product_quirk("*_flt.fits:chunked,no-ranges,null=size,style=jpeg")
    assert spec.match == "*_flt.fits"
    assert spec.options == {"chunked": True, "ranges": False, "style": BodyStyle.JPEG}
    assert spec.cells == {"size": None}
    assert parse_product_quirk("x:size='12'").cells == {"size": "12"}
    assert parse_product_quirk("x:size=12.0").cells == {"size": 12.0}
    catalogue = Catalogue()
    catalogue.add_program(90001, files=4, size=5760)
    assert parse_product_quirk("*_flt.fits:redirect").apply(catalogue) == 1
    fault = parse_fault("hang:Mast.Caom.Products:skip=1")
    assert (fault.kind, fault.match, fault.skip, fault.times) == (
        FaultKind.HANG,
        "Mast.Caom.Products",
        1,
        1,
    )


def test_portal_quirks_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        PortalQuirks(size_types=("bytes",))
    with pytest.raises(ValueError):
        PortalQuirks(page_rows=0)
    merged = PortalQuirks(page_rows=10).merged(PortalQuirks(page_rows=4, executing_rounds=1))
    assert (merged.page_rows, merged.executing_rounds) == (4, 1)


async def test_tutorial_program_is_untouched_by_the_realistic_one(emulator: Emulator) -> None:
    status, headers, _ = await fetch(emulator, RAW, method="HEAD")
    assert status == 200 and headers["Accept-Ranges"] == "bytes" and "Content-Length" in headers
    obs = observations(emulator.url)
    await asyncio.to_thread(obs.query_criteria, proposal_id=7291)
    assert len(invokes(emulator)) == 1  # no EXECUTING, one page
