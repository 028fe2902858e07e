"""JWST beside Hubble: JWST programs mirrored through the same pass as HST's.

The manifest names the collection; JWST proposal ids are found as people write them;
files land where astroquery puts them, each fetched once however often its row
repeats; guide-star and association files are counted apart; planned observations
are not failures and are mirrored once executed; product lists that fail for too many
obsids are asked for in halves; public files come from the bucket by the keys MAST's
path lookup gives; FITS files are checked by their checksums. The emulator's JWST
program 01345 stands in for the archive; every pass is a real one, in this process.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from hstsync.archive.cloud import checked_key, cloud_key, cloud_source, wants_path_lookup
from hstsync.archive.collection import query_ids
from hstsync.archive.manifest import parse_manifest_bytes, render_manifest
from hstsync.archive.paging import Batcher, batch_sizes
from hstsync.archive.resolve import Resolver
from hstsync.cli.commands import main
from hstsync.cli.report import print_status
from hstsync.config import Config, DownloadConfig, DownloadSource, for_directory
from hstsync.emulator import (
    EXCLUSIVE_ACCESS,
    JWST_PROPOSAL,
    Catalogue,
    Emulator,
    Fault,
    FaultKind,
    PortalQuirks,
    RecordedRequest,
    add_jwst_program,
    jwst_expected_products,
)
from hstsync.emulator.server import CLOUD_BUCKET
from hstsync.errors import ManifestError
from hstsync.model import Product, ProductState, Request, RequestState, human_bytes
from hstsync.service.daemon import run_once
from hstsync.service.daemon.web import render_page
from hstsync.service.sync.lookup import Lookups
from hstsync.store.db import Store

JWST = Path("mastDownload/JWST")
L3 = "jw01345-o001_t001_nircam_clear-f200w"
PLANNED = "jw01345-o002_t001_nircam_clear-f444w"
I2D = f"mast:JWST/product/{L3}_i2d.fits"
CAL = "mast:JWST/product/jw01345001001_02101_00001_nrca1_cal.fits"
ASN = "mast:JWST/product/jw01345-o001_20221220t013456_image3_00001_asn.json"
TOKEN = "jwst-mirror-token-0123456789abcdef"

MANIFEST = 'proposal_id = 1345\n[criteria]\nobs_collection = "JWST"\n'
DONE_WHEN = MANIFEST + '[filters]\ncalib_level = [2, 3]\nproductType = ["SCIENCE"]\n'


def toml(text: str, name: str = "jw") -> Request:
    return parse_manifest_bytes(name, text.encode(), ".toml")


def make_config(
    root: Path, emulator: Emulator, manifest: str = MANIFEST, **download: object
) -> Config:
    settings: dict[str, object] = {
        "backoff": 0.01,
        "backoff_max": 0.05,
        "retries": 2,
        "timeout": 10,
        **download,
    }
    cfg = for_directory(root, server=emulator.url, **settings)
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "jw.toml").write_text(manifest)
    return cfg


def file_gets(emulator: Emulator) -> list[RecordedRequest]:
    """The GETs of files (MAST, the cdn and the bucket) the emulator answered."""
    return [r for r in emulator.requests if r.method == "GET" and r.data_uri]


def mirrored(cfg: Config) -> dict[str, bytes]:
    """Every file under the mirror's mastDownload tree: relative path -> bytes."""
    top = cfg.paths.mirror
    return {
        p.relative_to(top).as_posix(): p.read_bytes()
        for p in (top / "mastDownload").rglob("*")
        if p.is_file()
    }


def request_row(cfg: Config, name: str = "jw"):
    with Store.open_readonly(cfg.paths.database) as store:
        row = store.get_request(name)
    assert row is not None
    return row


# -- the manifest: the collection and proposal ids ---------------------------------------------


@pytest.mark.parametrize("written", ["1345", '"1345"', '"01345"', "[1345, '01345']"])
def test_jwst_proposal_ids_are_kept_as_the_catalogue_keeps_them(written: str):
    text = f'proposal_id = {written}\n[criteria]\nobs_collection = "JWST"\n'
    request = toml(text.replace("'", '"'))
    assert (request.collection, request.proposal_ids) == ("JWST", ("01345",))
    # an HST id is kept as written, leading zeros dropped, as before
    assert toml("proposal_id = 07291\n".replace("07291", '"07291"')).proposal_ids == ("7291",)
    assert toml("proposal_id = 7291\n").collection == "HST"


def test_a_jwst_request_asks_for_both_forms_of_its_proposal_ids():
    assert query_ids("JWST", ("01345", "02736")) == ["1345", "01345", "2736", "02736"]
    assert query_ids("HST", ("7291",)) == ["7291"]


def test_a_jwst_manifest_round_trips_through_render():
    request = toml(DONE_WHEN)
    text = render_manifest(request)
    assert 'obs_collection = "JWST"' in text and 'proposal_id = "01345"' in text
    again = parse_manifest_bytes("jw", text.encode(), ".toml")
    assert again == request and again.digest() == request.digest()
    # an HST request's text and fingerprint do not mention collections
    hst = toml("proposal_id = 7291\n[filters]\ncalib_level = [2]\n")
    assert "obs_collection" not in render_manifest(hst)
    assert hst.digest() == Request("x", ("7291",), {}, {"calib_level": [2]}).digest()


def test_hstsync_add_collection_jwst_writes_a_jwst_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
    )
    argv = ["add", "1345", "--collection", "jwst", "--product-type", "SCIENCE"]

    assert main([*argv, "--config", str(config)]) == 0

    manifest = tmp_path / "requests" / "1345.toml"
    request = parse_manifest_bytes("1345", manifest.read_bytes(), ".toml")
    assert (request.collection, request.proposal_ids) == ("JWST", ("01345",))
    assert request.filters == {"productType": ["SCIENCE"]}
    capsys.readouterr()
    # another collection is refused with a clear line, and nothing is written
    assert main(["add", "1", "--collection", "TESS", "--config", str(config)]) == 2
    assert "obs_collection: hstsync mirrors 'HST' or 'JWST' programs" in capsys.readouterr().err
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["1345.toml"]


def resolved(server: str, request: Request) -> list[Product]:
    """Every product the request names, as ``hstsync plan`` resolves it (blocking)."""
    return [p for batch in Resolver(server).resolve_batches(request) for p in batch]


@pytest.mark.parametrize("matching", ["exact", "numeric"])
async def test_a_jwst_proposal_written_1345_finds_program_01345(emulator: Emulator, matching: str):
    emulator.catalogue.proposal_id_match = matching
    for written in ("1345", '"1345"'):
        request = toml(f'proposal_id = {written}\n[criteria]\nobs_collection = "JWST"\n')
        products = await asyncio.to_thread(resolved, emulator.url, request)
        assert {p.data_uri for p in products} == set(jwst_expected_products())
        assert {p.obs_collection for p in products} == {"JWST"}


async def test_an_hst_request_of_the_same_number_asks_for_hst_observations_only(
    emulator: Emulator,
):
    with pytest.raises(ManifestError, match="proposal 1345 has no HST observations"):
        await asyncio.to_thread(resolved, emulator.url, toml("proposal_id = 1345\n"))


# -- files: where they land, once each ----------------------------------------------------------


async def test_jwst_files_land_under_mastdownload_jwst_once_each_though_listed_hundreds_of_times(
    tmp_path: Path,
):
    catalogue = Catalogue()
    add_jwst_program(catalogue, repeats=100)  # the i2d is listed 801 times
    async with Emulator(catalogue) as emulator:
        cfg = make_config(tmp_path, emulator, segment_min=0)
        assert await run_once(cfg) == 0
        gets = Counter(r.data_uri for r in file_gets(emulator))

    expected = jwst_expected_products(catalogue)
    assert len(expected) == 45
    assert gets == Counter(dict.fromkeys(expected, 1))
    assert mirrored(cfg) == {e.relpath: e.body for e in expected.values()}
    assert all(rel.startswith(f"{JWST}/") for rel in mirrored(cfg))
    assert (JWST / L3 / f"{L3}_i2d.fits").as_posix() in mirrored(cfg)
    with Store.open_readonly(cfg.paths.database) as store:
        rows = store.products("jw")
    assert len(rows) == 45 and {r.state for r in rows} == {ProductState.DONE}


# -- guide stars and association files ----------------------------------------------------------


async def test_guide_star_and_association_files_are_counted_apart_in_plan(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
):
    cfg = make_config(tmp_path, emulator)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[paths]\nrequests = "{cfg.paths.requests}"\nmirror = "{cfg.paths.mirror}"\n'
        f'database = "{cfg.paths.database}"\n[mast]\nserver = "{emulator.url}"\n'
    )
    manifest = cfg.paths.requests / "jw.toml"

    code = await asyncio.to_thread(main, ["plan", str(manifest), "--config", str(config)])

    out = capsys.readouterr().out
    assert code == 0, out
    expected = jwst_expected_products()
    guide = [e for e in expected.values() if "_gs-" in e.relpath]
    guide_bytes = sum(len(e.body) for e in guide)
    assert "jw (JWST): 45 products" in out
    assert f"  of which 16 guide-star files, {human_bytes(guide_bytes)} (16 to fetch" in out
    assert "  of which 1 association file, 1.87 kB (1 to fetch, 1.87 kB)" in out
    assert "1 observation(s) planned, not yet executed" in out


async def test_product_type_science_and_info_leaves_guide_stars_out(
    tmp_path: Path, emulator: Emulator
):
    manifest = MANIFEST + '[filters]\nproductType = ["SCIENCE", "INFO"]\n'
    cfg = make_config(tmp_path, emulator, manifest)

    assert await run_once(cfg) == 0

    fetched = {r.data_uri for r in file_gets(emulator)}
    assert ASN in fetched and I2D in fetched and CAL in fetched
    assert not any("_gs-" in uri for uri in fetched)
    assert not any(uri.endswith("_i2d.jpg") for uri in fetched)  # a PREVIEW
    assert len(fetched) == 45 - 16 - 1


# -- planned observations ------------------------------------------------------------------------


async def test_planned_observations_are_not_failures_and_are_mirrored_once_executed(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
):
    cfg = make_config(tmp_path, emulator)
    assert await run_once(cfg) == 0

    row = request_row(cfg)
    assert (row.state, row.last_error, row.collection, row.planned) == (
        RequestState.DONE,
        None,
        "JWST",
        1,
    )
    # no product list was asked for the planned observation
    assert not any("87601100" in r.body for r in emulator.requests)
    with Store.open_readonly(cfg.paths.database) as store:
        summaries = store.summaries()
    out = io.StringIO()
    print_status(summaries, file=out, width=None)
    assert "JWST, 1 planned" in out.getvalue()
    assert "<td>JWST, 1 planned</td>" in render_page(summaries)

    # the archive executes it: calibrated, with files, which the next pass fetches
    emulator.catalogue.update_observation(
        PLANNED, calib_level=3, t_min=59950.5, t_max=59950.52, t_exptime=1000.0
    )
    made = emulator.catalogue.add_product(PLANNED, f"{PLANNED}_i2d.fits", 23040, calib_level=3)
    assert await run_once(cfg) == 0

    row = request_row(cfg)
    assert (row.state, row.planned) == (RequestState.DONE, 0)
    landed = cfg.paths.mirror / JWST / PLANNED / made.filename
    assert landed.read_bytes() == emulator.body(made.data_uri)


async def test_a_program_whose_observations_are_all_planned_says_so(
    tmp_path: Path, emulator: Emulator
):
    # the criterion keeps the planned observation alone
    cfg = make_config(tmp_path, emulator, MANIFEST + "calib_level = [-1]\n")

    assert await run_once(cfg) == 1

    row = request_row(cfg)
    assert row.state is RequestState.INCOMPLETE and row.planned == 1
    assert row.last_error == (
        "the 1 JWST observation(s) of proposal 01345 are planned, not yet executed: "
        "their files are fetched at a re-sync once the archive lists them"
    )


# -- product lists that fail for too many obsids -------------------------------------------------


def test_a_failed_jwst_batch_is_halved_and_later_batches_are_no_bigger():
    batcher = Batcher(batch_sizes("JWST"))
    obsids = [str(n) for n in range(250)]
    first, *full = batcher.add(obsids)
    assert len(first) == 10 and [len(b) for b in full] == [100, 100]
    assert batcher.split(full[0]) == [full[0][:50], full[0][50:]]
    assert batcher.rest() == [obsids[210:250]]
    assert batcher.split(["1"]) is None
    assert batcher.limit == 50
    assert batcher.split(full[1][:50]) == [full[1][:25], full[1][25:50]]
    # a half made before the limit came down is asked for in runs of the new limit
    assert [len(run) for run in batcher.fit(full[1][50:])] == [25, 25]
    # HST's batches are retried whole
    hst = Batcher(batch_sizes("HST"))
    assert hst.split(obsids[:50]) is None


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_product_lists_failing_for_too_many_obsids_resolve_in_smaller_batches(
    tmp_path: Path, emulator: Emulator, mode: str
):
    quirks = PortalQuirks(max_obsids_per_call=3, too_many_obsids=mode)  # type: ignore[arg-type]
    emulator.catalogue.set_portal_quirks(JWST_PROPOSAL, quirks)
    cfg = make_config(tmp_path, emulator)
    if mode == "hang":
        cfg = replace(cfg, mast=replace(cfg.mast, timeout=1.0))

    assert await run_once(cfg) == 0

    assert request_row(cfg).state is RequestState.DONE
    assert {r.data_uri for r in file_gets(emulator)} == set(jwst_expected_products())
    lists = [r for r in emulator.requests if "Mast.Caom.Products" in _form(r)]
    sizes = [len(json.loads(_form(r))["params"]["obsid"].split(",")) for r in lists]
    # the first list (9 obsids) failed and was halved down to 3 a call; none more after
    assert sizes[0] == 9 and max(sizes[sizes.index(3) :]) <= 3


async def test_plan_resolves_such_a_program_in_smaller_batches_too(emulator: Emulator):
    emulator.catalogue.set_portal_quirks(JWST_PROPOSAL, PortalQuirks(max_obsids_per_call=3))

    products = await asyncio.to_thread(resolved, emulator.url, toml(MANIFEST))

    assert {p.data_uri for p in products} == set(jwst_expected_products())


async def test_the_next_resolution_starts_from_the_batch_size_reached(
    tmp_path: Path, emulator: Emulator
):
    emulator.catalogue.set_portal_quirks(JWST_PROPOSAL, PortalQuirks(max_obsids_per_call=3))
    lookups = Lookups(make_config(tmp_path, emulator))
    request = toml(MANIFEST)

    def sizes() -> list[int]:
        lists = [r for r in emulator.requests if "Mast.Caom.Products" in _form(r)]
        emulator.requests.clear()
        return [len(json.loads(_form(r))["params"]["obsid"].split(",")) for r in lists]

    async for _batch in lookups.resolve_batches(request):
        pass
    # 9 failed, then its first half, 5 (in 3 and 2); its other half, 4, in runs of 3
    assert sizes() == [9, 5, 3, 2, 3, 1]
    # a later one (the daemon's re-sync) tries twice the size it reached, not 10 again
    async for _batch in lookups.resolve_batches(request):
        pass
    assert sizes() == [6, 3, 3, 3]


# -- the cloud copy ------------------------------------------------------------------------------


def jwst_product(filename: str, *, rights: str = "PUBLIC", key: str | None = None) -> Product:
    return Product(
        data_uri=f"mast:JWST/product/{filename}",
        obs_collection="JWST",
        obs_id=filename.rpartition("_")[0],
        filename=filename,
        size=5760,
        data_rights=rights,
        cloud_key=key,
    )


def test_a_jwst_bucket_key_is_the_path_lookups_for_that_very_file():
    cal = "jw01345001001_02101_00001_nrca1_cal.fits"
    key = f"jwst/public/jw01345/jw01345001001/{cal}"
    assert checked_key(f"/{key}", f"mast:JWST/product/{cal}") == key
    for wrong in (
        f"/jwst/public/jw01345/jw01345001001/{cal}.other",  # another file
        f"/jwst/public/../../{cal}",  # out of the bucket's tree
        cal,  # no directory at all
        None,  # the path lookup does not know it
    ):
        assert checked_key(wrong, f"mast:JWST/product/{cal}") is None
    auto = DownloadConfig(source=DownloadSource.AUTO, cloud_base="http://bucket.test")
    assert cloud_source(auto, jwst_product(cal, key=key)) == f"http://bucket.test/{key}"
    # without a key from the path lookup a JWST file goes to MAST: no formula of ours
    assert cloud_key(jwst_product(cal)) is None
    assert wants_path_lookup(auto, jwst_product(cal))
    assert not wants_path_lookup(auto, jwst_product(cal, rights=EXCLUSIVE_ACCESS))
    assert not wants_path_lookup(DownloadConfig(), jwst_product(cal))
    exclusive = jwst_product(cal, rights=EXCLUSIVE_ACCESS, key=key)
    assert cloud_source(auto, exclusive) is None


async def test_public_jwst_files_come_from_the_bucket_by_the_path_lookups_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    catalogue = Catalogue()
    add_jwst_program(catalogue, exclusive=True)  # visit 2 and the level-3 files exclusive
    monkeypatch.setenv("MAST_API_TOKEN", TOKEN)
    async with Emulator(catalogue, tokens={TOKEN: "webb"}) as emulator:
        cfg = make_config(
            tmp_path,
            emulator,
            source=DownloadSource.AUTO,
            cloud_base=emulator.cloud_url,
            segment_min=0,
        )
        assert await run_once(cfg) == 0
        requests = list(emulator.requests)
        expected = jwst_expected_products(catalogue)
        products = {p.data_uri: p for p in catalogue.program_products(JWST_PROPOSAL)}

    bucket = [r for r in requests if r.path.startswith(f"/{CLOUD_BUCKET}/") and r.method == "GET"]
    mast = [r for r in requests if r.path.endswith("/Download/file") and r.method == "GET"]
    public = {uri for uri, p in products.items() if not p.exclusive and p.cloud_key}
    # the public files the bucket holds came from it, at the keys the path lookup gave
    assert {r.data_uri for r in bucket} == public
    assert {r.path.removeprefix(f"/{CLOUD_BUCKET}/") for r in bucket} == {
        products[uri].cloud_key for uri in public
    }
    for r in bucket:
        headers = {k.lower() for k in r.headers}
        assert "authorization" not in headers and "cookie" not in headers
    # exclusive files (and the association file, which the bucket lacks) from MAST only,
    # the exclusive ones with the token, as HST's
    assert {r.data_uri for r in mast} == set(expected) - public
    for r in mast:
        if products[r.data_uri].exclusive:
            assert r.headers.get("Authorization") == f"token {TOKEN}"
    assert any(products[r.data_uri].exclusive for r in mast)
    assert ASN in {r.data_uri for r in mast}
    assert any(r.path == "/api/v0.1/path_lookup/" for r in requests)
    assert mirrored(cfg) == {e.relpath: e.body for e in expected.values()}


# -- verification --------------------------------------------------------------------------------


async def test_a_damaged_jwst_fits_file_is_caught_by_its_checksums_and_fetched_again(
    tmp_path: Path, emulator: Emulator
):
    emulator.faults.add(Fault(FaultKind.CORRUPT, match=CAL.rpartition("/")[2], after=3000))
    cfg = make_config(tmp_path, emulator, segment_min=0)

    assert await run_once(cfg) == 0

    assert sum(r.data_uri == CAL for r in file_gets(emulator)) == 2
    rel = jwst_expected_products()[CAL].relpath
    assert (cfg.paths.mirror / rel).read_bytes() == emulator.body(CAL)
    # text products have no checksums: their size (and, landed, their hash) is kept
    with Store.open_readonly(cfg.paths.database) as store:
        rows = {r.product.data_uri: r for r in store.products("jw")}
    for uri in (ASN, f"mast:JWST/product/{L3}_cat.ecsv"):
        assert rows[uri].state is ProductState.DONE and rows[uri].sha256


# -- helpers ------------------------------------------------------------------------------------


def _form(request: RecordedRequest) -> str:
    """The portal request (JSON) a recorded invoke carried."""
    return parse_qs(request.body).get("request", [""])[0]
