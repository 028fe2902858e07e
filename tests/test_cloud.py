"""The cloud copy: public HST files from the ``stpubdata`` bucket, MAST when that fails.

The key mapping is checked without I/O; the rest runs the whole pipeline against the
emulator's MAST and its S3-like bucket (``Emulator.cloud_url``), with a real SQLite
file, and reads the emulator's request log to see which side served what.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import aiohttp
import pytest
from tutorial import TUTORIAL_FILES, TUTORIAL_NAMES

from hstsync.archive.cloud import cloud_key, cloud_source, cloud_url
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import (
    DEFAULT_CLOUD_BASE,
    Config,
    DownloadConfig,
    DownloadSource,
    for_directory,
    parse_config,
)
from hstsync.emulator import EXCLUSIVE_ACCESS, Emulator, Fault, FaultKind, RecordedRequest
from hstsync.emulator.server import CLOUD_BUCKET
from hstsync.errors import ConfigError
from hstsync.model import Product, ProductState, RequestState
from hstsync.service.daemon import run_once
from hstsync.store.db import Store
from hstsync.transfer.outcome import Outcome, after_fallback

HST = Path("mastDownload/HST")
SECRET = "cloud-test-token-0123456789abcdef"


def product(
    filename: str, obs_id: str | None = None, *, uri: str | None = None, rights: str = "PUBLIC"
) -> Product:
    return Product(
        data_uri=uri if uri is not None else f"mast:HST/product/{filename}",
        obs_collection="HST",
        obs_id=obs_id if obs_id is not None else filename.partition("_")[0],
        filename=filename,
        size=2880,
        data_rights=rights,
    )


# -- the key mapping (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "obs_id", "key"),
    [
        # astroquery's own examples of get_cloud_uri
        ("u9o40504m_c3m.fits", None, "hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits"),
        ("u24r0102t_c1f.fits", None, "hst/public/u24r/u24r0102t/u24r0102t_c1f.fits"),
        ("j8pu0y010_drc.fits", None, "hst/public/j8pu/j8pu0y010/j8pu0y010_drc.fits"),
        # the tutorial's files
        ("o58701010_x1d.fits", "o58701010", "hst/public/o587/o58701010/o58701010_x1d.fits"),
        # a product of an association lives in the association's directory
        ("ibg705081_drz.fits", "ibg705080", "hst/public/ibg7/ibg705080/ibg705081_drz.fits"),
        # directories are lower case whatever the catalogue's spelling
        ("o58701010_x1d.fits", "O58701010", "hst/public/o587/o58701010/o58701010_x1d.fits"),
        # an obs_id that is no dataset name: the file name's root says where it is
        ("o58701010_flt.fits", "hst_7291_01", "hst/public/o587/o58701010/o58701010_flt.fits"),
    ],
)
def test_hst_product_maps_to_its_key_in_the_bucket(filename: str, obs_id: str | None, key: str):
    assert cloud_key(product(filename, obs_id)) == key


@pytest.mark.parametrize(
    "made",
    [
        # not HST: the bucket's other missions have other layouts
        product("tess2018_lc.fits", "o58701010", uri="mast:TESS/product/tess2018_lc.fits"),
        # a dataURI that names another file than productFilename
        product("o58701010_x1d.fits", uri="mast:HST/product/o58701010_x2d.fits"),
        # no 9-character dataset name anywhere
        product("hst_7291_01_stis_x1d.fits", "hst_7291_01"),
        # nothing that could become a path outside hst/public/
        product("..", "o58701010", uri="mast:HST/product/.."),
    ],
)
def test_products_the_bucket_cannot_hold_have_no_key(made: Product):
    assert cloud_key(made) is None
    assert cloud_url(DEFAULT_CLOUD_BASE, made) is None


def test_cloud_url_is_the_key_under_the_bucket_base():
    made = product("o58701010_x1d.fits")
    expected = "https://stpubdata.s3.amazonaws.com/hst/public/o587/o58701010/o58701010_x1d.fits"
    assert cloud_url(DEFAULT_CLOUD_BASE, made) == expected
    assert cloud_url(DEFAULT_CLOUD_BASE + "/", made) == expected


def test_only_public_products_with_source_auto_go_to_the_cloud():
    public = product("o58701010_x1d.fits")
    exclusive = product("o58701010_x2d.fits", rights=EXCLUSIVE_ACCESS)
    auto = DownloadConfig(source=DownloadSource.AUTO, cloud_base="http://bucket.test")
    assert cloud_source(auto, public) == (
        "http://bucket.test/hst/public/o587/o58701010/o58701010_x1d.fits"
    )
    assert cloud_source(auto, exclusive) is None
    assert cloud_source(DownloadConfig(cloud_base="http://bucket.test"), public) is None


def test_fallback_outcome_is_mast_s_with_both_counters():
    cloud = Outcome(ProductState.FAILED, 1000, 0, 1, "not found on the server (HTTP 404)")
    mast = Outcome(ProductState.DONE, 2000, 1000, 2, None)
    assert after_fallback(cloud, mast) == Outcome(ProductState.DONE, 3000, 0, 3, None)


def test_emulator_bucket_layout_agrees_with_ours(emulator: Emulator):
    for made in emulator.catalogue.products():
        ours = product(made.filename, made.obs_id, rights=made.data_rights)
        assert cloud_key(ours) == made.cloud_key


# -- configuration -------------------------------------------------------------------------

MINIMAL = '[paths]\nrequests = "/r"\nmirror = "/m"\ndatabase = "/d.db"\n'


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(MINIMAL + text), base=Path("/"))


def test_source_defaults_to_mast_and_the_bucket_to_stpubdata():
    cfg = parse("")
    assert cfg.download.source is DownloadSource.MAST
    assert cfg.download.cloud_base == "https://stpubdata.s3.amazonaws.com"


def test_source_auto_and_a_cloud_base_are_read():
    cfg = parse('[download]\nsource = "auto"\ncloud_base = "http://127.0.0.1:9000/stpubdata/"\n')
    assert cfg.download.source is DownloadSource.AUTO
    assert cfg.download.cloud_base == "http://127.0.0.1:9000/stpubdata"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('source = "cloud"', 'download.source: expected "mast" or "auto", got \'cloud\''),
        ("source = true", "download.source: expected"),
        ('cloud_base = "s3://stpubdata"', "download.cloud_base: expected an http\\(s\\) URL"),
        ('cloud_base = "https://b.test/?x=1"', "download.cloud_base: a base URL takes no query"),
        ("cloud_base = 5", "download.cloud_base: expected a URL string"),
    ],
)
def test_bad_source_or_cloud_base_is_refused_by_name(text: str, match: str):
    with pytest.raises(ConfigError, match=match):
        parse(f"[download]\n{text}\n")


# -- the emulator's bucket ---------------------------------------------------------------------


async def test_bucket_serves_public_files_like_s3(emulator: Emulator):
    uri = "mast:HST/product/o58701010_x2d.fits"
    body = emulator.body(uri)
    url = f"{emulator.cloud_url}/hst/public/o587/o58701010/o58701010_x2d.fits"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.head(url) as resp:
            assert resp.status == 200
            assert resp.headers["Accept-Ranges"] == "bytes"
            assert int(resp.headers["Content-Length"]) == len(body)
        async with session.get(url, headers={"Range": "bytes=1000-2999"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 1000-2999/{len(body)}"
            assert await resp.read() == body[1000:3000]
        wrong_dir = f"{emulator.cloud_url}/hst/public/o587/o58701030/o58701010_x2d.fits"
        async with session.get(wrong_dir) as resp:
            assert resp.status == 404
            assert "NoSuchKey" in await resp.text()
        emulator.catalogue.update_product(uri, data_rights=EXCLUSIVE_ACCESS)
        async with session.get(url) as resp:
            assert resp.status == 403
            assert "AccessDenied" in await resp.text()


# -- the pipeline ----------------------------------------------------------------------------------


@pytest.fixture
def anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAST_API_TOKEN", raising=False)
    monkeypatch.setenv("HSTSYNC_NO_KEYRING", "1")


def make_config(root: Path, emulator: Emulator, source: DownloadSource) -> Config:
    cfg = for_directory(
        root,
        server=emulator.url,
        backoff=0.01,
        backoff_max=0.05,
        timeout=5,
        source=source,
        cloud_base=emulator.cloud_url,
        segment_min=0,  # one request per file: the tests count requests per source
    )
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST, encoding="utf-8")
    return cfg


@pytest.fixture
def auto(tmp_path: Path, emulator: Emulator) -> Config:
    return make_config(tmp_path, emulator, DownloadSource.AUTO)


def from_cloud(emulator: Emulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.path.startswith(f"/{CLOUD_BUCKET}/")]


def from_mast(emulator: Emulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.path.endswith("/Download/file")]


def names(requests: list[RecordedRequest]) -> list[str]:
    """The file each GET asked for, in order."""
    return [
        (r.path if r.path.startswith(f"/{CLOUD_BUCKET}/") else r.query).rpartition("/")[2]
        for r in requests
        if r.method == "GET"
    ]


def assert_all_done_and_identical(config: Config, emulator: Emulator) -> None:
    for rel in TUTORIAL_FILES:
        body = (config.paths.mirror / HST / rel).read_bytes()
        assert body == emulator.body(f"mast:HST/product/{rel.split('/')[1]}"), rel
    assert not list((config.paths.mirror / HST).rglob("*.part"))
    with Store.open_readonly(config.paths.database) as store:
        [summary] = store.summaries()
        assert summary.request.state is RequestState.DONE
        assert {row.state for row in store.products("7291")} == {ProductState.DONE}


async def test_source_auto_takes_the_tutorial_set_from_the_cloud_byte_identical(
    auto: Config, emulator: Emulator, anonymous: None
):
    assert await run_once(auto) == 0

    assert sorted(names(from_cloud(emulator))) == sorted(TUTORIAL_NAMES)
    assert from_mast(emulator) == []
    assert_all_done_and_identical(auto, emulator)


async def test_token_never_reaches_the_cloud(
    auto: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MAST_API_TOKEN", SECRET)
    emulator.tokens[SECRET] = "astronomer"
    # one file is exclusive, so MAST downloads with the token in the same pass
    emulator.catalogue.update_product("o58701030_flt.fits", data_rights=EXCLUSIVE_ACCESS)

    assert await run_once(auto) == 0

    cloud = from_cloud(emulator)
    assert sorted(names(cloud)) == sorted(set(TUTORIAL_NAMES) - {"o58701030_flt.fits"})
    for request in cloud:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert "authorization" not in headers and "cookie" not in headers
        assert not any(SECRET in value for value in headers.values())
    # the token was in use: MAST got it with the queries and the exclusive download
    [exclusive] = [r for r in from_mast(emulator) if r.method == "GET"]
    assert exclusive.headers["Authorization"] == f"token {SECRET}"
    assert any(SECRET in r.headers.get("Cookie", "") for r in emulator.requests)
    assert_all_done_and_identical(auto, emulator)


async def test_exclusive_access_products_always_come_from_mast(
    auto: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MAST_API_TOKEN", SECRET)
    emulator.tokens[SECRET] = "astronomer"
    emulator.catalogue.set_data_rights("7291", EXCLUSIVE_ACCESS)

    assert await run_once(auto) == 0

    assert from_cloud(emulator) == []
    assert sorted(names(from_mast(emulator))) == sorted(TUTORIAL_NAMES)
    assert_all_done_and_identical(auto, emulator)


async def test_file_missing_from_the_cloud_comes_from_mast(
    auto: Config, emulator: Emulator, anonymous: None
):
    missing = "o58701010_x2d.fits"
    emulator.faults.add(
        Fault(FaultKind.STATUS, match=missing, status=404, times=None, endpoint="cloud")
    )

    assert await run_once(auto) == 0

    assert names(from_mast(emulator)) == [missing]
    # one look in the bucket, no retries there
    assert sorted(names(from_cloud(emulator))) == sorted(TUTORIAL_NAMES)
    assert_all_done_and_identical(auto, emulator)


async def test_cloud_reset_falls_back_to_mast_resuming_the_same_part(
    auto: Config, emulator: Emulator, anonymous: None
):
    cut = "o58701010_x2d.fits"
    emulator.faults.add(Fault(FaultKind.RESET, match=cut, after=7_000_000, endpoint="cloud"))

    assert await run_once(auto) == 0

    [resumed] = [r for r in from_mast(emulator) if r.method == "GET"]
    assert cut in resumed.query
    start = int(resumed.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 7_000_000
    assert resumed.body_bytes_sent == TUTORIAL_FILES[f"o58701010/{cut}"] - start
    assert_all_done_and_identical(auto, emulator)


async def test_cloud_failing_every_way_still_ends_done_from_mast(
    auto: Config, emulator: Emulator, anonymous: None
):
    # a body of the wrong size, a corrupted body, a server error, an access refusal
    emulator.faults.add(
        Fault(FaultKind.WRONG_SIZE, match="o58701010_x2d.fits", after=2880, endpoint="cloud")
    )
    emulator.faults.add(
        Fault(FaultKind.CORRUPT, match="o58701010_flt.fits", after=100_000, endpoint="cloud")
    )
    emulator.faults.add(
        Fault(FaultKind.STATUS, match="o58701030_*", status=503, times=None, endpoint="cloud")
    )
    emulator.faults.add(
        Fault(FaultKind.STATUS, match="o58701010_x1d.fits", status=403, endpoint="cloud")
    )

    assert await run_once(auto) == 0

    assert sorted(names(from_mast(emulator))) == sorted(TUTORIAL_NAMES)
    assert_all_done_and_identical(auto, emulator)
    with Store.open_readonly(auto.paths.database) as store:
        assert all(row.last_error is None for row in store.products("7291"))


async def test_source_mast_never_touches_the_cloud(
    tmp_path: Path, emulator: Emulator, anonymous: None
):
    config = make_config(tmp_path, emulator, DownloadSource.MAST)

    assert await run_once(config) == 0

    assert from_cloud(emulator) == []
    assert sorted(names(from_mast(emulator))) == sorted(TUTORIAL_NAMES)
    assert_all_done_and_identical(config, emulator)


def test_faults_aimed_at_the_bucket_leave_mast_alone():
    from hstsync.emulator.faults import Endpoint

    cloud_only = Fault(FaultKind.RESET, endpoint="cloud")
    assert cloud_only.aims_at(Endpoint.CLOUD) and not cloud_only.aims_at(Endpoint.DOWNLOAD)
    assert not Fault(FaultKind.RESET).aims_at(Endpoint.CLOUD)
    assert Fault(FaultKind.STATUS, endpoint="any").aims_at(Endpoint.CLOUD)
    with pytest.raises(ValueError, match="cloud"):
        Fault(FaultKind.INVOKE_ERROR, endpoint="cloud")
