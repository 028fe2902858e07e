"""A big program is resolved, recorded and fetched batch by batch (issue #14).

Each batch of observations is recorded and its transfers queued before the next batch
is asked for, so the first files arrive while the program is still being looked up and
the whole list is never held. Driven through the emulator with small batches.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from astropy.table import Table
from emulator_helpers import PageIgnoringArchive

from hstsync.archive import paging
from hstsync.archive.paging import Batcher, BatchSizes, Listing, ObservationPage
from hstsync.archive.rows import Claims, products_from_rows
from hstsync.archive.walk import AskPage, Walk
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind, PortalQuirks
from hstsync.errors import ArchiveUnavailable
from hstsync.model import ProductState, RequestState
from hstsync.service.daemon import run_once
from hstsync.service.sync.results import results_path
from hstsync.store.db import Store

PROPOSAL = 95300


def manifest(proposal: int = PROPOSAL) -> str:
    return f'proposal_id = "{proposal}"\n'


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Config:
    # one observation per batch; one transfer at a time: the feed holds two jobs, so a
    # batch of four cannot be queued whole before a file has been fetched
    monkeypatch.setattr(paging, "OBSID_BATCH", 1)
    emulator.catalogue.add_program(PROPOSAL, files=12, size=5760, per_observation=4)
    cfg = for_directory(
        tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.02, retries=0, timeout=5
    )
    cfg = replace(cfg, download=replace(cfg.download, concurrency=1, connections=1, per_host=1))
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "big.toml").write_text(manifest())
    return cfg


def events(emulator: Emulator) -> list[str]:
    """The emulator's requests, in order: "list" for a product list, "file" for a file."""
    seen = []
    for r in emulator.requests:
        if r.path == "/api/v0/invoke" and "Mast.Caom.Products" in unquote_plus(r.body):
            seen.append("list")
        elif r.method == "GET" and r.path.endswith("/Download/file"):
            seen.append("file")
    return seen


def states(config: Config) -> dict[str, ProductState]:
    with Store.open_readonly(config.paths.database) as store:
        return {row.product.filename: row.state for row in store.products("big")}


async def test_files_are_fetched_while_later_batches_are_still_being_looked_up(
    config: Config, emulator: Emulator
):
    assert await run_once(config) == 0

    seen = events(emulator)
    assert seen.count("list") == 3 and seen.count("file") == 12
    # the first batch's files came before the last batch was even asked for
    assert seen.index("file") < len(seen) - 1 - seen[::-1].index("list")
    assert set(states(config).values()) == {ProductState.DONE}


async def test_a_lookup_failing_half_way_still_fetches_what_an_earlier_one_listed(
    config: Config, emulator: Emulator
):
    assert await run_once(config) == 0
    held = sorted((config.paths.mirror / "mastDownload").rglob("*.fits"))
    assert len(held) == 12
    lost = held[-1]  # a file of the last observation, whose batch the next lookup misses
    lost.unlink()
    emulator.faults.add(
        Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Products", skip=1, times=None)
    )

    # every file is there again, so the run succeeds; the request says the re-sync failed
    assert await run_once(config) == 0

    # nothing was forgotten: the products the failed lookup never reached keep their
    # rows, and the lost file is fetched again from the earlier list
    assert len(states(config)) == 12
    assert lost.exists()
    with Store.open_readonly(config.paths.database) as store:
        row = store.get_request("big")
    assert row is not None and row.state is RequestState.DONE
    assert row.last_error is not None and row.last_error.startswith("last re-sync failed")


async def test_a_product_listed_again_in_a_later_batch_is_recorded_once(
    config: Config, emulator: Emulator
):
    # two observations that list the same file (as HAP products are), a batch each
    first, second = emulator.catalogue.add_program(95301, files=2, size=5760, per_observation=1)
    second.uri = first.data_uri
    (config.paths.requests / "twice.toml").write_text(manifest(95301))

    assert await run_once(config) == 0

    with Store.open_readonly(config.paths.database) as store:
        rows = store.products("twice")
    assert [row.product.data_uri for row in rows] == [first.data_uri]
    assert rows[0].state is ProductState.DONE


@pytest.mark.parametrize("server_page", [None, 1])
async def test_observations_are_listed_a_page_at_a_time_and_every_page_is_fetched(
    config: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, server_page: int | None
):
    # two observations a page (two pages, the second short); or a server that gives one
    # a page whatever is asked (and says so: its pages are full)
    monkeypatch.setattr(paging, "OBS_PAGE", 2)
    if server_page is not None:
        emulator.catalogue.set_portal_quirks(PROPOSAL, PortalQuirks(page_rows=server_page))

    assert await run_once(config) == 0

    pages = [
        r
        for r in emulator.requests
        if r.path == "/api/v0/invoke" and "Mast.Caom.Filtered" in unquote_plus(r.body)
    ]
    # a short page is the last; a server's own page size is not short (the last empty)
    assert len(pages) == (2 if server_page is None else 4)
    assert len(states(config)) == 12
    assert set(states(config).values()) == {ProductState.DONE}


async def test_an_archive_that_ignores_page_ends_the_list_when_a_page_brings_nothing_new(
    config: Config, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(paging, "OBS_PAGE", 2)  # 95300's three observations: two pages
    async with PageIgnoringArchive(emulator) as archive:
        config = replace(config, mast=replace(config.mast, server=archive.url))

        assert await run_once(config) == 0

    # page 2 answered with page 1's observations: nothing new, no page 3
    assert archive.listed == 2
    assert len(states(config)) == 8  # what the two observations listed hold
    assert set(states(config).values()) == {ProductState.DONE}


@pytest.mark.parametrize(
    ("pages", "asked"),
    [
        ([(2, 2, None), (2, 2, None), (1, 2, None)], 3),  # a short page is the last
        ([(2, 2, None), (0, 2, None)], 2),  # so is an empty one
        ([(2, 2, 2), (2, 2, 9), (2, 2, 9), (2, 2, 9)], 3),  # the first answer said 2 pages
        ([(500, 500, None), (500, 500, None), (3, 500, None)], 3),  # the server's own size
    ],
)
def test_a_listing_asks_for_no_page_beyond_what_the_archive_implies(
    pages: list[tuple[int, int, int | None]], asked: int
):
    listing = Listing()
    taken = 0
    for rows, page_size, total in pages:
        if listing.done:
            break
        found = ObservationPage([str(n) for n in range(rows)], rows, page_size, total)
        listing.took(found, fresh=rows)  # every observation new
        taken += 1
    assert taken == asked and listing.done


def walked(walk: Walk, pages: list[list[str]], failing: set[int]) -> list[object]:
    """Drive ``walk`` as a driver would: ``pages`` of obsids, full pages of 3 but the last;
    the product lists whose size is in ``failing`` fail. What it asked for, in order."""
    asked: list[object] = []
    while (step := walk.next()) is not None:
        if isinstance(step, AskPage):
            obsids = pages[step.page - 1]
            asked.append(f"page {step.page}")
            walk.answer(ObservationPage(obsids, len(obsids), 3, len(pages)))
        elif len(step.obsids) in failing:
            asked.append(("failed", step.obsids))
            walk.fail(ArchiveUnavailable("the archive did not answer within 1 s"))
        else:
            asked.append(step.obsids)
            walk.answer()
    return asked


def test_a_walk_asks_pages_then_batches_and_a_failed_jwst_batch_in_halves() -> None:
    halved: list[list[str]] = []
    batcher = Batcher(BatchSizes(first=2, size=4, halve=True))
    walk = Walk(batcher, None, lambda batch, exc: halved.append(batch))
    pages = [["a", "b", "c"], ["d", "e", "f"], ["g"]]

    asked = walked(walk, pages, failing={4})

    assert asked == [
        "page 1",
        ["a", "b"],  # the small first batch as soon as a page holds it
        "page 2",
        ("failed", ["c", "d", "e", "f"]),
        ["c", "d"],
        ["e", "f"],
        "page 3",  # a short page: the last
        ["g"],
    ]
    assert halved == [["c", "d", "e", "f"]] and batcher.limit == 2


def test_a_walk_raises_a_failed_batch_it_does_not_halve() -> None:
    walk = Walk(Batcher(BatchSizes(first=2, size=4)), None, lambda batch, exc: None)
    with pytest.raises(ArchiveUnavailable):
        walked(walk, [["a", "b"]], failing={2})


def test_claims_keep_a_path_with_its_first_owner_across_batches() -> None:
    def row(uri: str, obs: str = "o1", name: str = "a_flt.fits") -> dict[str, object]:
        return {
            "dataURI": uri,
            "obs_collection": "HST",
            "obs_id": obs,
            "productFilename": name,
            "size": 5760,
        }

    claims = Claims()
    [owner] = products_from_rows([row("mast:HST/product/a_flt.fits")], claims)
    # a later batch: the same dataURI again (left out), a twin of its path (fails),
    # and a new file (kept)
    later = products_from_rows(
        [
            row("mast:HST/product/a_flt.fits"),
            row("mast:HST/product/other/a_flt.fits"),
            row("mast:HST/product/b_flt.fits", name="b_flt.fits"),
        ],
        claims,
    )

    assert owner.problem is None
    assert [p.data_uri for p in later] == [
        "mast:HST/product/other/a_flt.fits",
        "mast:HST/product/b_flt.fits",
    ]
    assert later[0].problem is not None and "same path" in later[0].problem
    assert later[1].problem is None


def test_a_flawed_row_is_replaced_by_a_usable_one_from_a_later_batch() -> None:
    claims = Claims()
    flawed = {"dataURI": "mast:HST/product/a.fits", "obs_collection": "HST", "obs_id": "o1"}
    usable = flawed | {"productFilename": "a.fits", "size": 5760}

    [first] = products_from_rows([flawed], claims)
    [second] = products_from_rows([usable], claims)

    assert first.problem is not None and second.problem is None
    assert products_from_rows([usable], claims) == []


async def test_the_results_table_of_a_program_written_in_pages_lists_every_file(
    config: Config, monkeypatch: pytest.MonkeyPatch
):
    from hstsync.store import db

    real = db.Store.product_pages
    monkeypatch.setattr(db.Store, "product_pages", lambda self, name: real(self, name, page=5))

    assert await run_once(config) == 0

    table = Table.read(results_path(config.paths.mirror, "big"), format="ascii.ecsv")
    assert len(table) == 12 and set(table["Status"]) == {"COMPLETE"}
    assert len(set(table["Local Path"])) == 12


def test_seen_holds_every_text_added_and_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    from hstsync.archive.seen import Seen

    monkeypatch.setattr(Seen, "RUN", 64)  # many runs merged into the sorted array
    seen = Seen()
    added = [f"mast:HST/product/o{n:05d}_flt.fits" for n in range(0, 5000, 2)]
    for text in added:
        assert seen.add(text)
        assert not seen.add(text)  # twice: held once

    assert len(seen) == len(added)
    assert all(text in seen for text in added)
    assert not any(f"mast:HST/product/o{n:05d}_flt.fits" in seen for n in range(1, 5000, 2))
    assert "" not in seen and "\x00" not in seen


def test_the_first_product_list_is_small_and_the_rest_full(monkeypatch: pytest.MonkeyPatch):
    from hstsync.archive.paging import Batcher

    monkeypatch.setattr(paging, "FIRST_BATCH", 2)
    monkeypatch.setattr(paging, "OBSID_BATCH", 3)
    batcher = Batcher()

    assert batcher.add(["1", "2", "3", "2"]) == [["1", "2"]]
    assert batcher.add(["3", "4", "5", "6", "7"]) == [["3", "4", "5"]]
    assert batcher.rest() == [["6", "7"]]
    assert batcher.rest() == []


def test_a_run_caps_glibcs_malloc_arenas_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import platform

    from hstsync.service.daemon.runtime import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
