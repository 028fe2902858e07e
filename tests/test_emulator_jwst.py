"""JWST through the same Observations API: unmodified astroquery finds the emulator's
JWST program 01345 (and not 1345), sees its repeated rows, guide-star, INFO and
planned rows, downloads its files; product lists for too many obsids fail on demand;
the public bucket holds JWST files in JWST's layout; a 5 GB mosaic is served from
its head to its tail with flat memory."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import signal
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astroquery.exceptions import NoResultsWarning, RemoteServiceError

from hstsync.emulator import (
    EXCLUSIVE_ACCESS,
    JWST_PROPOSAL,
    Catalogue,
    Emulator,
    PortalQuirks,
    add_jwst_program,
    default_catalogue,
    jwst_expected_products,
)
from hstsync.emulator.cli import build_parser
from hstsync.emulator.jwst import PIPELINE_VERSION, REPEATS
from hstsync.emulator.switches import obsid_limit, parse_jwst_program
from tests.emulator_helpers import fetch, observations

REPO = str(Path(__file__).resolve().parents[1])
L3 = "jw01345-o001_t001_nircam_clear-f200w"
I2D = f"mast:JWST/product/{L3}_i2d.fits"
CAL = "mast:JWST/product/jw01345001001_02101_00001_nrca1_cal.fits"
MEMBERS = 8
TOKEN = "jwst-test-token-0123456789abcdef"


def quiet_fits(body: bytes) -> fits.Header:
    """The primary header, checksums verified: any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(io.BytesIO(body), checksum=True) as hdus:
            hdus.verify("exception")
            return hdus[0].header.copy()


async def jwst_observations(emu: Emulator, **criteria: Any) -> Any:
    obs = observations(emu.url)
    return await asyncio.to_thread(obs.query_criteria, **criteria)


async def jwst_products(emu: Emulator) -> Any:
    obs = observations(emu.url)
    table = await jwst_observations(emu, proposal_id=JWST_PROPOSAL, obs_collection="JWST")
    return await asyncio.to_thread(obs.get_product_list, table)


# -- the catalogue, through astroquery -------------------------------------------------------


async def test_the_program_is_found_by_its_five_digit_id_only(emulator: Emulator) -> None:
    table = await jwst_observations(emulator, proposal_id="01345", obs_collection="JWST")

    assert len(table) == 1 + MEMBERS + 1
    assert set(table["proposal_id"]) == {"01345"}
    assert set(table["obs_collection"]) == {"JWST"}
    assert set(table["instrument_name"]) == {"NIRCAM/IMAGE"}
    assert sorted(Counter(table["calib_level"]).items()) == [(-1, 1), (2, MEMBERS), (3, 1)]
    assert table["obs_id"][0] == L3

    # the catalogue keeps five digits: an unpadded id finds nothing (the client pads)
    for unpadded in ("1345", 1345, ["1345"]):
        with pytest.warns(NoResultsWarning):
            assert len(await jwst_observations(emulator, proposal_id=unpadded)) == 0
    obs = observations(emulator.url)
    count = await asyncio.to_thread(obs.query_criteria_count, proposal_id=["01345"])
    assert count == 10
    # and the HST programs are not JWST's
    with pytest.warns(NoResultsWarning):
        hst = await jwst_observations(emulator, proposal_id="01345", obs_collection="HST")
    assert len(hst) == 0


async def test_proposal_ids_can_match_by_number(emulator: Emulator) -> None:
    emulator.catalogue.proposal_id_match = "numeric"
    for unpadded in ("1345", 1345, ["1345"], "01345"):
        table = await jwst_observations(emulator, proposal_id=unpadded, obs_collection="JWST")
        assert len(table) == 10 and set(table["proposal_id"]) == {"01345"}
    assert len(await jwst_observations(emulator, proposal_id="07291")) == 5
    with pytest.warns(NoResultsWarning):
        assert len(await jwst_observations(emulator, proposal_id="134")) == 0
    # both forms in one criterion find it whichever way the archive matches
    emulator.catalogue.proposal_id_match = "exact"
    both = await jwst_observations(emulator, proposal_id=["1345", "01345"])
    assert len(both) == 10


async def test_the_product_list_repeats_files_many_times(emulator: Emulator) -> None:
    products = await jwst_products(emulator)
    counts = Counter(products["dataURI"])

    assert len(counts) == 45 and set(counts) == set(jwst_expected_products())
    assert len(products) == 285
    # a level-3 file: once under its own observation, REPEATS times under each member
    assert counts[I2D] == 1 + MEMBERS * REPEATS
    i2d = products[products["dataURI"] == I2D]
    assert len(set(i2d["obsID"])) == 1 + MEMBERS
    assert set(i2d["parent_obsid"]) == {"87601000"}  # the level-3 observation owns it
    # a member's file: once under its own observation, REPEATS times under the level-3
    cal = products[products["dataURI"] == CAL]
    assert len(cal) == 1 + REPEATS
    assert Counter(cal["obs_id"]) == {"jw01345001001_02101_00001_nrca1": 1 + REPEATS}
    # astroquery's own de-duplication gives one row a file
    obs = observations(emulator.url)
    unique = await asyncio.to_thread(obs.get_unique_product_list, products["obsID"][:1])
    assert len(unique) == len(set(unique["dataURI"]))


async def test_repeats_are_a_parameter() -> None:
    catalogue = Catalogue()
    add_jwst_program(catalogue, repeats=300)
    async with Emulator(catalogue) as emu:
        products = await jwst_products(emu)
    assert Counter(products["dataURI"])[I2D] == 1 + MEMBERS * 300
    assert len(set(products["dataURI"])) == 45


async def test_guide_star_info_and_planned_rows(emulator: Emulator) -> None:
    products = await jwst_products(emulator)
    unique = products[np.unique(products["dataURI"], return_index=True)[1]]
    by_type = Counter(unique["productType"])

    assert by_type == {"SCIENCE": 3 * MEMBERS + 3, "AUXILIARY": 16, "INFO": 1, "PREVIEW": 1}
    guide = unique[unique["productType"] == "AUXILIARY"]
    assert all("_gs-" in name for name in guide["productFilename"])
    # an exposure's list: more guide-star rows than rows of its own science files
    exposure = "jw01345001002_02101_00002_nrcb1"
    listed = products[products["obsID"] == "87601008"]
    # the visit's guide-star files belong to its first exposure, listed by all four
    first = "jw01345001002_02101_00001_nrca1"
    assert set(listed[listed["productType"] == "AUXILIARY"]["obs_id"]) == {first}
    guide_rows = sum(listed["productType"] == "AUXILIARY")
    science_rows = sum((listed["productType"] == "SCIENCE") & (listed["obs_id"] == exposure))
    assert (guide_rows, science_rows) == (8, 3)
    info = unique[unique["productType"] == "INFO"]
    assert list(info["productFilename"]) == ["jw01345-o001_20221220t013456_image3_00001_asn.json"]
    assert info["calib_level"][0] == 3
    assert Counter(unique["calib_level"]) == {1: MEMBERS + 8, 2: 2 * MEMBERS + 8, 3: 5}
    assert set(unique["productSubGroupDescription"]) >= {"UNCAL", "RATE", "CAL", "I2D", "SEGM"}

    # the planned observation: calib_level -1, no times, no products
    table = await jwst_observations(emulator, proposal_id="01345", calib_level=[-1])
    assert list(table["obs_id"]) == ["jw01345-o002_t001_nircam_clear-f444w"]
    assert np.ma.is_masked(table["t_min"][0]) or np.isnan(table["t_min"][0])
    obs = observations(emulator.url)
    with pytest.warns(NoResultsWarning):
        assert len(await asyncio.to_thread(obs.get_product_list, table)) == 0


async def test_jwst_rows_carry_jwst_values(emulator: Emulator) -> None:
    products = await jwst_products(emulator)
    assert all(uri.startswith("mast:JWST/product/jw01345") for uri in products["dataURI"])
    assert set(products["obs_collection"]) == {"JWST"}
    assert set(products["project"]) == {"JWST"}
    assert set(products["prvversion"]) == {PIPELINE_VERSION}
    assert set(products["proposal_id"]) == {"01345"}
    assert set(products["dataRights"]) == {"PUBLIC"}
    obs = observations(emulator.url)
    science = await asyncio.to_thread(
        obs.filter_products, products, productType="SCIENCE", calib_level=[3]
    )
    assert set(science["productFilename"]) == {
        f"{L3}_i2d.fits",
        f"{L3}_segm.fits",
        f"{L3}_cat.ecsv",
    }


async def test_astroquery_downloads_the_level3_files_intact(
    emulator: Emulator, tmp_path: Path
) -> None:
    products = await jwst_products(emulator)
    obs = observations(emulator.url)
    chosen = await asyncio.to_thread(obs.filter_products, products, calib_level=[3])
    manifest = await asyncio.to_thread(
        obs.download_products, chosen, download_dir=str(tmp_path), verbose=False
    )
    assert set(manifest["Status"]) == {"COMPLETE"} and len(manifest) == 5

    expected = jwst_expected_products()
    for uri in set(chosen["dataURI"]):
        want = expected[uri]
        got = (tmp_path / want.relpath).read_bytes()
        assert got == want.body == emulator.body(uri), want.relpath
        assert want.relpath.startswith(f"mastDownload/JWST/{L3}/")
    header = quiet_fits((tmp_path / expected[I2D].relpath).read_bytes())
    assert header["CAL_VER"] == PIPELINE_VERSION and header["CRDS_CTX"].endswith(".pmap")
    catalog = expected[f"mast:JWST/product/{L3}_cat.ecsv"]
    assert len(catalog.body) == 3217
    assert len(Table.read(catalog.body.decode(), format="ascii.ecsv")) > 0
    asn = expected["mast:JWST/product/jw01345-o001_20221220t013456_image3_00001_asn.json"]
    assert len(asn.body) == 1871 and isinstance(json.loads(asn.body), dict)


def test_expected_products_name_mirror_paths_and_bodies() -> None:
    expected = jwst_expected_products()
    cal = expected[CAL]
    assert cal.relpath == (
        "mastDownload/JWST/jw01345001001_02101_00001_nrca1/jw01345001001_02101_00001_nrca1_cal.fits"
    )
    assert quiet_fits(cal.body)["FILENAME"] == "jw01345001001_02101_00001_nrca1_cal.fits"
    guide = [p for p in expected.values() if "_gs-" in p.relpath]
    assert len(guide) == 16
    for product in guide:
        assert product.relpath.startswith("mastDownload/JWST/jw01345001")
        quiet_fits(product.body)


async def test_reprocessing_shows_in_prvversion_only_when_the_software_changes(
    emulator: Emulator,
) -> None:
    before = quiet_fits(emulator.body(CAL))
    emulator.catalogue.reprocess(CAL, software=False)  # new reference files only
    refs = quiet_fits((await fetch(emulator, CAL))[2])
    products = await jwst_products(emulator)
    assert set(products[products["dataURI"] == CAL]["prvversion"]) == {PIPELINE_VERSION}
    assert refs["CAL_VER"] == before["CAL_VER"] == PIPELINE_VERSION
    assert refs["CRDS_CTX"] != before["CRDS_CTX"] and refs["DATE"] > before["DATE"]

    emulator.catalogue.reprocess(CAL)  # a new pipeline
    new = quiet_fits((await fetch(emulator, CAL))[2])
    products = await jwst_products(emulator)
    assert set(products[products["dataURI"] == CAL]["prvversion"]) == {"1.12.6"}
    assert new["CAL_VER"] == "1.12.6"


# -- exclusive access and the bucket ---------------------------------------------------------


async def test_exclusive_access_is_a_switch() -> None:
    catalogue = Catalogue()
    add_jwst_program(catalogue, exclusive=True)
    async with Emulator(catalogue, tokens={TOKEN: "alice"}) as emu:
        products = await jwst_products(emu)
        rights = Counter(products["dataRights"])
        assert set(rights) == {"PUBLIC", EXCLUSIVE_ACCESS}
        exclusive = "mast:JWST/product/jw01345001002_02101_00001_nrca1_cal.fits"
        assert (await fetch(emu, CAL))[0] == 200
        assert (await fetch(emu, I2D))[0] == 401
        assert (await fetch(emu, exclusive))[0] == 401
        status, _, body = await fetch(emu, exclusive, {"Authorization": f"token {TOKEN}"})
        assert status == 200 and body == emu.body(exclusive)
        # exclusive-access data is never in the bucket
        key = f"jwst/public/jw01345/L3/t/o001/{L3}_i2d.fits"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{emu.cloud_url}/{key}") as resp,
        ):
            assert resp.status == 403


async def test_the_bucket_holds_public_jwst_files_in_jwsts_layout() -> None:
    async with Emulator(default_catalogue(jwst_cloud=True)) as emu, aiohttp.ClientSession() as s:
        keys = {
            I2D: f"jwst/public/jw01345/L3/t/o001/{L3}_i2d.fits",
            CAL: "jwst/public/jw01345/jw01345001001/jw01345001001_02101_00001_nrca1_cal.fits",
        }
        for uri, key in keys.items():
            async with s.get(f"{emu.cloud_url}/{key}") as resp:
                assert resp.status == 200 and await resp.read() == emu.body(uri), key
                assert resp.headers["Server"] == "AmazonS3"
        guide = next(p for p in emu.catalogue.products() if "_gs-" in p.filename)
        assert guide.cloud_key == f"jwst/public/jw01345/jw01345001001/{guide.filename}"
        # the wrong directory, and the association file (not in our evidence), are 404
        wrong = "jwst/public/jw01345/jw01345001002/jw01345001001_02101_00001_nrca1_cal.fits"
        asn = "jwst/public/jw01345/L3/t/o001/jw01345-o001_20221220t013456_image3_00001_asn.json"
        for key in (wrong, asn):
            async with s.get(f"{emu.cloud_url}/{key}") as resp:
                assert resp.status == 404, key
        # MAST's path-lookup service answers the key, as astroquery's cloud module asks
        params = [("uri", I2D), ("uri", "mast:JWST/product/nothing.fits")]
        async with s.get(f"{emu.url}/api/v0.1/path_lookup/", params=params) as resp:
            paths = await resp.json()
        assert paths[I2D] == {"status_code": 200, "path": "/" + keys[I2D]}
        assert paths["mast:JWST/product/nothing.fits"] == {"status_code": 404, "path": None}

    # the default catalogue keeps the JWST program out of the bucket
    async with Emulator() as emu, aiohttp.ClientSession() as s:
        async with s.get(f"{emu.cloud_url}/{keys[I2D]}") as resp:
            assert resp.status == 404
        assert all(p.cloud_key is None for p in emu.catalogue.program_products(JWST_PROPOSAL))


# -- product lists that time out -------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::astroquery.exceptions.NoResultsWarning")  # the planned one
async def test_too_many_obsids_in_one_product_list_fails_and_small_batches_work(
    emulator: Emulator,
) -> None:
    emulator.catalogue.set_portal_quirks(JWST_PROPOSAL, PortalQuirks(max_obsids_per_call=4))
    obs = observations(emulator.url)
    table = await jwst_observations(emulator, proposal_id=JWST_PROPOSAL)

    with pytest.raises(RemoteServiceError, match="timed out"):
        await asyncio.to_thread(obs.get_product_list, table)
    # one observation at a time, as MAST advises (astroquery#2507), gets everything
    rows = 0
    for obsid in table["obsid"]:
        rows += len(await asyncio.to_thread(obs.get_product_list, str(obsid)))
    assert rows == 285
    batch = [str(o) for o in table["obsid"][:4]]
    assert len(await asyncio.to_thread(obs.get_product_list, batch)) > 0


async def test_too_many_obsids_can_hang_instead() -> None:
    quirks = PortalQuirks(max_obsids_per_call=2, too_many_obsids="hang")
    async with Emulator(default_catalogue(), quirks=quirks) as emu:
        mashup = {"service": "Mast.Caom.Products", "params": {"obsid": "87601000,87601001"}}
        form = {"request": json.dumps(mashup)}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{emu.url}/api/v0/invoke", data=form) as resp:
                assert (await resp.json())["status"] == "COMPLETE"
            mashup["params"] = {"obsid": "87601000,87601001,87601002"}
            form = {"request": json.dumps(mashup)}
            timeout = aiohttp.ClientTimeout(total=0.5)
            with pytest.raises(asyncio.TimeoutError):
                async with session.post(
                    f"{emu.url}/api/v0/invoke", data=form, timeout=timeout
                ) as resp:
                    await resp.read()


def test_portal_quirks_merge_the_stricter_obsid_limit() -> None:
    merged = PortalQuirks(max_obsids_per_call=50).merged(
        PortalQuirks(max_obsids_per_call=500, too_many_obsids="hang")
    )
    assert (merged.max_obsids_per_call, merged.too_many_obsids) == (50, "hang")
    with pytest.raises(ValueError):
        PortalQuirks(max_obsids_per_call=0)
    with pytest.raises(ValueError):
        PortalQuirks(too_many_obsids="sulk")


# -- multi-GB files --------------------------------------------------------------------------


async def test_a_5_gb_mosaic_is_served_head_to_tail_with_flat_memory() -> None:
    size = 1_736_112 * 2880  # 5,000,002,560 bytes: a level-3 mosaic (astroquery#3066)
    catalogue = Catalogue()
    add_jwst_program(catalogue, i2d_size=size)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    async with Emulator(catalogue) as emu:
        products = await jwst_products(emu)
        assert products[products["dataURI"] == I2D]["size"][0] == size

        status, headers, _ = await fetch(emu, I2D, method="HEAD")
        assert status == 200 and headers["Content-Length"] == str(size)
        status, _, head = await fetch(emu, I2D, {"Range": "bytes=0-2879"})
        assert status == 206
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy says the data are missing: they are
            header = fits.Header.fromstring(head.decode("ascii"))
        assert header["NAXIS1"] == size - 2880 and header["DATASUM"] and header["CHECKSUM"]
        status, headers, tail = await fetch(emu, I2D, {"Range": "bytes=-1048576"})
        assert status == 206 and len(tail) == 1 << 20
        assert headers["Content-Range"] == f"bytes {size - (1 << 20)}-{size - 1}/{size}"
        assert tail == emu.body_file(I2D).read(size - (1 << 20), 1 << 20)
        assert emu.served(I2D) == 2880 + (1 << 20)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 200


# -- synthetic JWST programs -----------------------------------------------------------------


async def test_a_synthetic_jwst_program_is_deterministic_and_served() -> None:
    catalogue = Catalogue()
    made = catalogue.add_jwst_program(2736, observations=40, per_level3=20, repeats=2)
    again = Catalogue().add_jwst_program("02736", observations=40, per_level3=20, repeats=2)
    assert [p.data_uri for p in made] == [p.data_uri for p in again]

    async with Emulator(catalogue) as emu:
        table = await jwst_observations(emu, proposal_id="02736", obs_collection="JWST")
        assert Counter(table["calib_level"]) == {2: 40, 3: 2}
        products = await asyncio.to_thread(observations(emu.url).get_product_list, table)
        counts = Counter(products["dataURI"])
        assert len(counts) == len(made)
        i2d = "mast:JWST/product/jw02736-o001_t001_nircam_clear-f200w_i2d.fits"
        assert counts[i2d] == 1 + 20 * 2
        assert sum("_gs-" in uri for uri in counts) == 10 * 10  # ten visits of four
        status, _, body = await fetch(emu, made[-1].data_uri)
        assert status == 200 and body == emu.body(made[-1].data_uri)


def test_a_2000_observation_jwst_program_is_cheap_to_build() -> None:
    tracemalloc.start()
    began = time.perf_counter()
    try:
        made = Catalogue().add_jwst_program(1345, observations=2000, repeats=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(made) == 2000 * 3 + 500 * 10 + 20 * 5
    assert peak < 64 * 2**20
    assert time.perf_counter() - began < 30  # about 1 s on a quiet machine, traced


# -- the command line ------------------------------------------------------------------------


def test_cli_specs_for_jwst_parse() -> None:
    spec = parse_jwst_program("1345:2000")
    assert (spec.proposal_id, spec.observations, spec.size) == ("01345", 2000, 5760)
    spec = parse_jwst_program("2736:40:11520:exclusive")
    assert (spec.proposal_id, spec.size, spec.data_rights) == ("02736", 11520, EXCLUSIVE_ACCESS)
    assert obsid_limit("500") == (500, "error") and obsid_limit("50:hang") == (50, "hang")
    args = build_parser().parse_args(["--proposal-id-match", "numeric", "--jwst-cloud"])
    assert (args.proposal_id_match, args.jwst_cloud) == ("numeric", True)
    for bad in ("x:1", "123456:1", "1345", "1345:-1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected|must"):
            parse_jwst_program(bad)


async def test_the_cli_lists_the_jwst_program() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hstsync.emulator", "--jwst-program", "2736:8",
        "--max-obsids-per-call", "4",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        while not any(line.startswith("  proposal 02736") for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert raw, lines
            lines.append(raw.decode())
        assert "  proposal 01345: 45 products, 476873 bytes (JWST)\n" in lines
        assert any(line.startswith("  proposal 7291: 53 products") for line in lines)
        url = lines[0].split()[-1]
        mashup = {"service": "Mast.Caom.Products", "params": {"obsid": ",".join(
            str(87_601_000 + n) for n in range(5)
        )}}  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/api/v0/invoke", data={"request": json.dumps(mashup)}) as resp,
        ):
            assert (await resp.json())["status"] == "ERROR"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
