"""The pure deciding parts of a pass, without I/O: the plan (what to fetch, what is
present, what cannot be fetched and why, how many bytes) and the request's settlement
(its state and last error)."""

from __future__ import annotations

from pathlib import Path

from hstsync.model import Counts, Product, ProductState, RequestState, human_bytes
from hstsync.service.sync.planner import HEADROOM, Action, Holding, PlannedFile, Room, plan
from hstsync.service.sync.settlement import Settlement, exit_code, settle

MIRROR = Path("/nowhere/mirror")  # never touched: planning does no I/O
ROOMY = 10**15


def product(
    name: str,
    size: int | None = 2880,
    *,
    data_uri: str | None = None,
    data_rights: str = "PUBLIC",
    problem: str | None = None,
) -> Product:
    return Product(
        data_uri=f"mast:HST/product/{name}" if data_uri is None else data_uri,
        obs_collection="HST",
        obs_id="o58701010",
        filename=name,
        size=size,
        data_rights=data_rights,
        problem=problem,
    )


def one(
    p: Product,
    holding: Holding | None = None,
    *,
    recorded: dict[str, ProductState] | None = None,
    have_token: bool = False,
) -> PlannedFile:
    holdings = {p.data_uri: holding} if holding is not None else {}
    got = plan([p], MIRROR, holdings, free=ROOMY, recorded=recorded, have_token=have_token)
    [planned] = got.files
    return planned


# -- plan ---------------------------------------------------------------------------------------


def test_a_file_missing_from_the_mirror_is_fetched_whole():
    p = product("a_flt.fits", 5760)
    planned = one(p)
    assert planned.action is Action.FETCH
    assert planned.dest == MIRROR / "mastDownload/HST/o58701010/a_flt.fits"
    assert planned.missing == 5760


def test_a_partial_file_counts_its_part_and_fetches_the_rest():
    planned = one(product("a_flt.fits", 5760), Holding(part=1000))
    assert (planned.action, planned.on_disk, planned.missing) == (Action.FETCH, 1000, 4760)


def test_a_part_longer_than_the_catalogue_size_holds_at_most_that_size():
    planned = one(product("a_flt.fits", 5760), Holding(part=9000))
    assert (planned.on_disk, planned.missing) == (5760, 0)


def test_a_file_complete_in_the_mirror_but_not_recorded_is_recorded_not_fetched():
    planned = one(product("a_flt.fits", 5760), Holding(whole=5760))
    assert planned.action is Action.RECORD and planned.present and planned.missing == 0


def test_a_done_file_intact_in_the_mirror_is_left_alone():
    p = product("a_flt.fits", 5760)
    planned = one(p, Holding(whole=5760), recorded={p.data_uri: ProductState.DONE})
    assert planned.action is Action.KEEP and planned.present


def test_a_done_file_that_vanished_or_changed_is_fetched_again():
    p = product("a_flt.fits", 5760)
    done = {p.data_uri: ProductState.DONE}
    assert one(p, None, recorded=done).action is Action.FETCH
    assert one(p, Holding(whole=100), recorded=done).action is Action.FETCH


def test_a_file_of_the_right_size_that_failed_its_content_check_is_fetched():
    planned = one(product("a_flt.fits", 5760), Holding(whole=5760, corrupt="bad checksum"))
    assert planned.action is Action.FETCH and planned.missing == 5760


def test_a_file_of_unknown_size_is_present_when_there_and_fetched_for_no_counted_bytes():
    p = product("a_raw.fits", None)
    assert one(p, Holding(whole=8640)).action is Action.RECORD
    absent = one(p, Holding(part=500))
    assert (absent.action, absent.on_disk, absent.missing) == (Action.FETCH, 500, 0)
    done = {p.data_uri: ProductState.DONE}
    assert one(p, None, recorded=done).action is Action.FETCH


def test_rows_that_can_never_be_fetched_are_refused_with_why():
    problem = product("a_flt.fits", None, problem="the catalogue's size is not a number: 'x'")
    hostile = product("../../etc/passwd", 10)
    nameless = product("b_flt.fits", data_uri="")
    got = plan([problem, hostile, nameless], MIRROR, {}, free=ROOMY).files
    assert [f.action for f in got] == [Action.REFUSE] * 3
    assert got[0].refused == "the catalogue's size is not a number: 'x'"
    assert got[1].refused is not None and got[1].refused.startswith("refused: ")
    assert "separator" in got[1].refused
    assert got[2].refused == "the catalogue gives no dataURI for this file"
    assert all(f.dest is None and f.missing == 0 for f in got)


def test_a_product_refused_for_want_of_a_token_waits_until_there_is_one():
    p = product("a_flt.fits", 5760, data_rights="EXCLUSIVE_ACCESS")
    refused = {p.data_uri: ProductState.AUTH_REQUIRED}
    assert one(p, recorded=refused).action is Action.WAIT
    assert one(p, recorded=refused, have_token=True).action is Action.FETCH


def test_plan_totals_count_present_to_fetch_and_missing_bytes():
    present, partial, missing = (product(n, 5760) for n in ("a.fits", "b.fits", "c.fits"))
    hostile = product("../x.fits", 10)
    unknown = product("d.fits", None)
    got = plan(
        [present, partial, missing, hostile, unknown],
        MIRROR,
        {present.data_uri: Holding(whole=5760), partial.data_uri: Holding(part=1000)},
        free=ROOMY,
    )
    assert (got.present, got.to_fetch) == (1, 3)
    assert got.total == 3 * 5760
    assert got.missing_bytes == (5760 - 1000) + 5760
    assert [f.product for f in got.transfers] == [present, partial, missing, unknown]
    assert [f.product for f in got.refusals] == [hostile]


def test_a_plan_that_does_not_fit_says_how_much_is_missing_and_free():
    big = product("huge.fits", 2880 * 10**9)
    got = plan([big], MIRROR, {}, free=10**9)
    assert not got.fits
    assert got.shortfall() == (
        "not enough room: 2.88 TB to fetch, 1.00 GB free on the mirror's filesystem"
    )
    assert plan([big], MIRROR, {}, free=2880 * 10**9 + HEADROOM).shortfall() is None


def test_nothing_to_fetch_always_fits():
    p = product("a.fits", 5760)
    assert plan([p], MIRROR, {p.data_uri: Holding(whole=5760)}, free=0).fits


# -- settle -------------------------------------------------------------------------------------


def test_a_request_with_every_file_done_is_done_without_error():
    assert settle(Counts(total=3, done=3)) == Settlement(RequestState.DONE, None, True)


def test_an_empty_request_resolved_is_not_done_and_says_why():
    why = "the filters left none of the 53 products of proposal 7291: …"
    assert settle(Counts(), empty=why) == Settlement(RequestState.INCOMPLETE, why, True)
    assert settle(Counts()) == Settlement(
        RequestState.INCOMPLETE, "the archive lists no products for this request", True
    )


def test_a_request_with_failures_is_incomplete_and_says_how_many_and_the_first_why():
    got = settle(
        Counts(total=6, done=1, failed=2, auth_required=1, pending=2),
        first_failure=" (first: a.fits: HTTP 500)",
    )
    assert got.state is RequestState.INCOMPLETE and got.resolved
    assert got.last_error == (
        "2 failed (first: a.fits: HTTP 500), 1 need a MAST token, 2 not fetched"
    )


def test_a_failed_resync_of_a_done_request_keeps_it_done_and_says_so():
    got = settle(Counts(total=2, done=2), lookup_error="cannot reach the archive")
    assert got == Settlement(
        RequestState.DONE, "last re-sync failed: cannot reach the archive", False
    )


def test_a_failed_lookup_of_a_request_never_fully_fetched_is_incomplete_with_the_reason():
    never = settle(Counts(), lookup_error="cannot reach the archive")
    assert never == Settlement(RequestState.INCOMPLETE, "cannot reach the archive", False)
    partly = settle(Counts(total=2, done=1, pending=1), lookup_error="timeout")
    assert partly == Settlement(RequestState.INCOMPLETE, "timeout", False)


def test_exit_code_is_zero_only_when_every_request_is_done():
    assert exit_code([RequestState.DONE, RequestState.DONE]) == 0
    assert exit_code([RequestState.DONE, RequestState.INCOMPLETE]) == 1
    assert exit_code([]) == 0


def test_room_counts_the_batches_of_a_pass_and_stays_short_once_short():
    free = HEADROOM + 4000
    room = Room(free)

    assert room.take(plan([product("a.fits", size=2880)], MIRROR, {}, free=free))
    assert room.shortfall() is None
    assert not room.take(plan([product("b.fits", size=2880)], MIRROR, {}, free=free))
    # a later batch with nothing missing does not make the pass fit again
    assert not room.take(plan([], MIRROR, {}, free=free))
    assert room.shortfall() == (
        f"not enough room: 5.76 kB to fetch, {human_bytes(free)} free on the mirror's filesystem"
    )
