"""Segmented transfers: the pure planning, the connection budget, and whole transfers
against the emulator — several Range requests at once, resume of only what is missing,
a server that ignores Range, a reset inside one segment, and the connection cap.

Nothing here times anything: a transfer is stopped when the record beside its part
says enough is held, and concurrency is read from the emulator's own count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hstsync.config import DownloadConfig
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.model import ProductState
from hstsync.transfer import Downloader, Outcome, Transfer, held_bytes, open_session, part_path
from hstsync.transfer.budget import ConnectionBudget, allot
from hstsync.transfer.control import (
    Control,
    control_path,
    parse,
    read_control,
    render,
    write_control,
)
from hstsync.transfer.ranges import (
    MIN_PIECE,
    SMALLEST_PIECE,
    Pace,
    apportion,
    capacity,
    covered,
    cuts,
    largest_piece,
    merge,
    min_piece,
    missing,
    should_segment,
    weighted_cuts,
)
from hstsync.transfer.work import Work

X1D = "o58701010_x1d.fits"
X2D = "o58701010_x2d.fits"
FLT = "o58701010_flt.fits"
SIZES = {
    X1D: 77760,
    X2D: 14474880,
    FLT: 10535040,
    "o58701030_x1d.fits": 77760,
    "o58701030_x2d.fits": 14474880,
    "o58701030_flt.fits": 10535040,
}

# -- pure planning -----------------------------------------------------------------------


def test_merge_sorts_and_joins_touching_and_overlapping_ranges():
    assert merge([(10, 20), (0, 5), (5, 8), (15, 30), (40, 40)]) == [(0, 8), (10, 30)]
    assert covered([(0, 10), (5, 15)]) == 15


def test_missing_is_the_complement_of_what_is_done():
    assert missing(100, []) == [(0, 100)]
    assert missing(100, [(0, 100)]) == []
    assert missing(100, [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert missing(100, [(30, 40), (0, 10), (35, 100)]) == [(10, 30)]


def test_apportion_gives_connections_so_that_ranges_end_together():
    m = MIN_PIECE
    assert apportion([12 * m], 2) == [2]  # thirds, not a half and two quarters
    assert apportion([12 * m, 6 * m], 3) == [2, 1]  # pieces of 4 m and 3 m
    assert apportion([12 * m, 12 * m], 1) == [1, 0]
    assert apportion([3 * m], 5) == [2]  # never a piece under MIN_PIECE
    assert apportion([m, 2 * m - 1], 2) == [0, 0]
    assert apportion([], 3) == []


def test_capacity_and_cuts():
    m = MIN_PIECE
    assert capacity([3 * m, m, 2 * m]) == 2 + 0 + 1
    assert cuts(0, 12, 3) == [4, 8]
    assert cuts(100, 110, 2) == [105]
    assert cuts(0, 10, 1) == []
    assert weighted_cuts(0, 10, [2, 2, 1]) == [4, 8]  # a piece that starts later: half


def test_work_cuts_a_fresh_file_evenly_for_a_burst_of_connections():
    m = MIN_PIECE
    work = Work(12 * m, (), None)
    first = work.claim()
    assert [(s.position, s.end) for s in first] == [(0, 12 * m)]
    for _ in range(3):
        work.promise()
    assert work.share() == 12 * m / 4  # the promised connections count
    more = work.claim(3)
    ranges = sorted((s.position, s.end) for s in [*first, *more])
    assert ranges == [(0, 3 * m), (3 * m, 6 * m), (6 * m, 9 * m), (9 * m, 12 * m)]
    for _ in range(8):
        work.promise()
    assert work.share() is None  # every cut the 3 m pieces allow is promised already
    assert len(work.claim(8)) == 8
    assert work.claim() == []


def test_the_smallest_piece_follows_the_pace_once_known():
    assert min_piece(None) == MIN_PIECE  # before any answer
    assert Pace(4e6, 0.05).head == 200_000
    assert min_piece(Pace(4e6, 0.05)) == SMALLEST_PIECE  # never under it
    assert min_piece(Pace(40e6, 0.1)) == 4_000_000  # a fast, far server: larger pieces


def test_a_freed_connection_takes_an_end_of_the_largest_range_so_both_end_together():
    m = MIN_PIECE
    work = Work(12 * m, (), None)
    [running] = work.claim()
    running.position = 4 * m  # 8 m left, streaming
    work.observe_latency(0.05)
    work.observe_rate(4e6)
    assert work.pace == Pace(4e6, 0.05)
    work.promise()
    [stolen] = work.claim()
    assert stolen.end == 12 * m and running.end == stolen.start
    # the running connection keeps what it carries while the new one waits for its
    # first byte, then both have the same to carry
    head = 200_000
    assert abs((running.end - running.position) - (head + stolen.end - stolen.start)) <= 1
    # a range not yet answered is cut evenly: all its pieces wait alike
    running.position = running.end
    work.finish(running)
    work.promise()
    [again] = work.claim()
    assert again.start - stolen.start == again.end - again.start


def test_a_range_is_not_cut_for_a_piece_under_the_smallest():
    work = Work(10 * MIN_PIECE, (), None)
    [running] = work.claim()
    work.observe_latency(0.05)
    work.observe_rate(4e6)
    running.position = running.end - (200_000 + 2 * SMALLEST_PIECE)
    assert work.share() is not None  # exactly two pieces of the smallest, after the head
    running.position += 1
    assert work.share() is None
    assert work.claim() == []


def test_largest_piece_is_what_the_busiest_connection_still_carries():
    m = MIN_PIECE
    assert largest_piece([12 * m], [0], 0) == 12 * m
    assert largest_piece([12 * m], [0], 3) == 3 * m  # four equal pieces
    assert largest_piece([12 * m, 2 * m], [0, m // 2], 1) == 6 * m
    # a range whose connection keeps a head start: the head plus its equal piece
    assert largest_piece([8 * m], [m], 1) == 5 * m
    assert largest_piece([], [], 4) == 0


def test_should_segment_needs_size_and_accept_ranges():
    big = 9 << 20
    assert should_segment(big, 8 << 20, "bytes")
    assert should_segment(big, 8 << 20, " Bytes ")
    assert not should_segment(big, 8 << 20, None)
    assert not should_segment(big, 8 << 20, "none")
    assert not should_segment(8 << 20, 8 << 20, "bytes")  # small files stay one request
    assert not should_segment(big, 0, "bytes")  # 0 = never


def test_control_file_round_trips_and_counts_what_is_held():
    control = Control(1000, '"etag"', ((0, 100), (500, 600)))
    again = parse(render(control))
    assert again == control
    assert again is not None and again.held == 200 and again.end == 600
    assert missing(1000, again.done) == [(100, 500), (600, 1000)]
    # a file whose length no answer has stated yet
    assert parse(render(Control(None, None, ((0, 10),)))) == Control(None, None, ((0, 10),))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"format": 3, "size": 10, "done": []}',
        '{"format": 1, "size": 10, "done": []}',
        '{"format": 2, "size": -1, "done": []}',
        '{"format": 2, "size": 10, "done": [[5, 20]]}',
        '{"format": 2, "size": 10, "done": [[5, 5]]}',
        '{"format": 2, "size": 10, "done": [[1, 2, 3]]}',
        '{"format": 2, "size": 10, "done": [[true, 2]]}',
        '{"format": 2, "size": 10, "done": [], "validator": 3}',
        '{"format": 2, "size": "10", "done": []}',
        "[" * 100_000,
    ],
)
def test_a_control_file_we_did_not_write_is_not_trusted(text: str):
    assert parse(text) is None


def test_the_segment_record_of_the_previous_version_is_read_once(tmp_path: Path):
    part = tmp_path / "f.fits.part"
    part.write_bytes(b"x" * 300)
    record = part.with_name(part.name + ".segments")
    record.write_text('{"format":1,"size":300,"validator":"\\"e\\"","done":[[0,10],[100,150]]}')
    control = read_control(part, 300)
    assert control is not None and control.legacy
    assert (control.size, control.validator, control.done) == (300, '"e"', ((0, 10), (100, 150)))
    # a segmented part of that version was preallocated: any other length is not it
    assert read_control(part, 299) is None


def test_held_bytes_is_what_the_control_file_names(tmp_path: Path):
    dest = tmp_path / "f.fits"
    part = part_path(dest)
    assert held_bytes(dest) == 0
    part.write_bytes(b"x" * 300)
    assert held_bytes(dest) == 0  # nothing names these bytes: of unknown origin
    write_control(part, Control(300, None, ((0, 10), (100, 150))))
    assert held_bytes(dest) == 60  # the control file says what is in place
    control_path(part).write_text("garbage")
    assert held_bytes(dest) == 0


# -- the budget ------------------------------------------------------------------------------


async def test_budget_caps_total_and_per_host_and_serves_waiters_in_turn():
    budget = ConnectionBudget(connections=3, per_host=2)
    await budget.take("a")
    await budget.take("a")
    assert not budget.try_take("a")  # a's two are out
    assert budget.try_take("b")
    assert not budget.try_take("c")  # three in all
    waiter = asyncio.create_task(budget.take("c"))
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.give_back("a")
    await asyncio.wait_for(waiter, 1)
    assert budget.in_use == 3


async def test_spare_tokens_go_to_waiting_files_first_then_to_the_best_candidate():
    budget = ConnectionBudget(connections=2, per_host=2)
    await budget.take("h")
    await budget.take("h")
    waiter = asyncio.create_task(budget.take("h"))
    await asyncio.sleep(0)
    budget.give_back("h")
    assert not budget.try_take("h")  # the freed token went to the waiting file
    await asyncio.wait_for(waiter, 1)

    left = {"small": 10.0, "large": 99.0}
    with (
        budget.candidate("h", lambda _: left["small"]) as small,
        budget.candidate("h", lambda _: left["large"]) as large,
    ):
        budget.give_back("h")
        assert not budget.try_take("h", small)
        assert budget.try_take("h", large)
        budget.give_back("h")
        left["large"] = None  # type: ignore[assignment]  # nothing left to split
        assert budget.try_take("h", small)


async def test_a_large_file_awaiting_its_first_answer_holds_spare_tokens_back():
    # Two large files' first requests are out; the smaller one is answered first. It
    # must not take every spare token before the larger one's answer arrives.
    budget = ConnectionBudget(connections=6, per_host=6, grace=60)
    answers = {"small": budget.expect("h", 10_000_000), "large": budget.expect("h", 14_000_000)}
    await budget.take("h")
    await budget.take("h")
    with budget.candidate("h", lambda k: 10_000_000 / (1 + k)) as small:
        answers["small"].close()
        assert not budget.try_take("h", small)  # the larger file would need them more
        with budget.candidate("h", lambda k: 14_000_000 / (1 + k)) as large:
            answers["large"].close()
            assert not budget.try_take("h", small)
            assert budget.try_take("h", large)


def per_connection(
    size: float, has: int = 1, most: int | None = None
) -> Callable[[int], float | None]:
    """A candidate's share: ``size`` bytes over its ``has`` connections and ``extra`` more,
    None once it has ``most`` connections in all (it cannot use another)."""
    return lambda extra: None if most is not None and has + extra >= most else size / (has + extra)


def test_allot_deals_each_spare_token_to_the_file_that_would_end_last():
    # 14 MB and 10 MB on one connection each, six spare: 14/5 = 2.8 and 10/3 = 3.3 MB
    # per connection (4 and 2 more); the other way round, 14/4 = 3.5 would end last
    assert allot([per_connection(14e6), per_connection(10e6)], 6) == [4, 2]
    assert allot([per_connection(10e6), per_connection(10e6)], 3) == [2, 1]  # ties: first
    assert allot([per_connection(14e6, most=3), per_connection(1e6)], 5) == [2, 3]
    assert allot([per_connection(14e6, most=1)], 4) == [0]  # cannot split: none dealt
    assert allot([], 4) == []
    assert allot([per_connection(1e6)], 0) == [0]


async def test_each_file_takes_its_part_of_the_spare_tokens_at_once():
    # the tokens come back together; each file's connections are taken in one go (so
    # its pieces are cut evenly), never one by one in turns with the other files
    m = MIN_PIECE
    budget = ConnectionBudget(connections=8, per_host=8, grace=60)
    await budget.take("h")
    await budget.take("h")
    large, small = Work(14 * m, (), None), Work(10 * m, (), None)
    large.claim(), small.claim()  # each on its first connection
    with (
        budget.candidate("h", large.share, large.lanes) as large_one,
        budget.candidate("h", small.share, small.lanes) as small_one,
    ):
        assert budget.spare("h") == 6
        assert budget.take_spares("h", large_one) == (4, 4)
        large.promise(4)
        assert budget.take_spares("h", small_one) == (2, 2)
        small.promise(2)
        assert budget.spare("h") == 0 and budget.take_spares("h", large_one) == (0, 0)
    pieces = [s.end - s.start for s in large.claim(4)]
    assert max(pieces) - min(pieces) < 5  # five equal pieces, not halves of halves


async def test_an_expected_file_keeps_its_part_of_the_spare_tokens():
    m = MIN_PIECE
    budget = ConnectionBudget(connections=8, per_host=8, grace=60)
    await budget.take("h")  # the expected file's first request
    await budget.take("h")
    answer = budget.expect("h", 10 * m)
    work = Work(14 * m, (), None)
    work.claim()
    with budget.candidate("h", work.share, work.lanes) as large:
        assert budget.take_spares("h", large) == (4, 4)  # two stay for the expected file
        work.promise(4)
        assert budget.spare("h") == 2
        answer.close()  # its transfer turned out to be one stream
        # the two spare now, and pieces planned for the stream's token when it is back
        assert budget.take_spares("h", large) == (2, 3)


async def test_a_file_plans_pieces_for_the_tokens_whole_files_will_give_back():
    m = MIN_PIECE
    budget = ConnectionBudget(connections=6, per_host=6, grace=60)
    await budget.take("h")  # a small whole file, back a moment later
    await budget.take("h")  # the large file's first connection
    work = Work(12 * m, (), None)
    [first] = work.claim()
    with budget.candidate("h", work.share, work.lanes) as me:
        taken, planned = budget.take_spares("h", me)
        assert (taken, planned) == (4, 5)
        work.promise(taken)
        running = [first, *work.claim(taken, planned)]
        # six pieces: five running now, and one waiting for the small file's token,
        # half their size (it starts later)
        spans = sorted((s.start, s.end) for s in running)
        piece = 12 * m * 2 // 11
        assert [end - start for start, end in spans] == [piece] * 5
        assert [a[1] for a in spans[:-1]] == [b[0] for b in spans[1:]] and spans[0][0] == 0
        later = (spans[-1][1], 12 * m)
        assert later[1] - later[0] in (piece // 2, piece // 2 + 1)
        assert work.share() == piece + later[1] - later[0]  # nobody carries it yet: last
        budget.give_back("h")  # the small file is done
        assert budget.take_spares("h", me) == (1, 1)
        work.promise(1)
        assert [(s.start, s.end) for s in work.claim(1, 1)] == [later]


async def test_an_awaited_answer_holds_spare_tokens_back_for_the_grace_only():
    budget = ConnectionBudget(connections=4, per_host=4, grace=0.05)
    slow = budget.expect("h", 14_000_000)
    with budget.candidate("h", lambda _: 1_000_000.0) as me:
        assert not budget.try_take("h", me)
        await asyncio.wait_for(budget.changed(), 10)  # the grace's end wakes candidates
        assert budget.try_take("h", me)
    slow.close()
    slow.close()  # closing twice is harmless


# -- transfers against the emulator ---------------------------------------------------------


def cfg(**changes: Any) -> DownloadConfig:
    base: dict[str, Any] = dict(
        concurrency=8,
        connections=4,
        per_host=4,
        segment_min=1 << 20,
        retries=3,
        timeout=2.0,
        backoff=0.01,
        backoff_max=0.05,
    )
    return DownloadConfig(**{**base, **changes})


class Harness:
    def __init__(self, emu: Emulator, session: aiohttp.ClientSession, root: Path, c: Any) -> None:
        self.emu = emu
        self.root = root
        self.downloader = Downloader(session, c)

    def transfer(self, name: str) -> Transfer:
        return Transfer(
            url=f"{self.emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{name}",
            dest=self.root / "mastDownload" / "HST" / name[:9] / name,
            size=SIZES[name],
            label=f"test:{name}",
        )

    async def fetch(self, name: str) -> Outcome:
        return await self.downloader.fetch(self.transfer(name))

    def body(self, name: str) -> bytes:
        return self.emu.body(f"mast:HST/product/{name}")

    def gets(self, name: str, since: int = 0) -> list[Any]:
        return [r for r in self.emu.requests[since:] if r.method == "GET" and name in r.query]

    def on_disk(self, name: str) -> bytes:
        return self.transfer(name).dest.read_bytes()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """``await make(rate=…, **config)``: an emulator, a session, a downloader."""
    stack: list[Any] = []

    async def make(rate: float | None = None, **changes: Any) -> Harness:
        c = cfg(**changes)
        emu = Emulator(rate=rate)
        await emu.start()
        session = open_session(c)
        stack.append((emu, session))
        return Harness(emu, session, tmp_path, c)

    yield make
    for emu, session in stack:
        await session.close()
        await emu.close()


def header(request: Any, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def requested(request: Any, size: int) -> tuple[int, int]:
    """The half-open byte range a GET asked for (the whole file without Range)."""
    value = header(request, "Range")
    if value is None:
        return 0, size
    first, _, last = value.removeprefix("bytes=").partition("-")
    return int(first), (int(last) + 1 if last else size)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_large_file_is_fetched_in_concurrent_ranges_and_is_byte_identical(harness):
    h = await harness(rate=20e6)

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.error is None
    assert outcome.attempts == 1 and outcome.fetched == SIZES[X2D]
    assert h.on_disk(X2D) == h.body(X2D)
    dest = h.transfer(X2D).dest
    assert not part_path(dest).exists() and not control_path(part_path(dest)).exists()
    gets = h.gets(X2D)
    ranged = [r for r in gets if header(r, "Range")]
    assert len(ranged) >= 2
    assert h.emu.peak_downloads >= 2  # at once, not one after another
    # cut at the catalogue's size from the first request: no HEAD, no probe, no
    # whole-file request before the ranges
    assert ranged == gets
    assert [r for r in h.emu.requests if r.method == "HEAD"] == []
    assert merge(requested(r, SIZES[X2D]) for r in gets) == [(0, SIZES[X2D])]


async def test_at_32_connections_a_large_file_is_cut_into_many_ranges_from_the_start(harness):
    # 14.5 MB alone with 32 connections: cut at its catalogue size into as many pieces
    # as are worth a request (MIN_PIECE before any answer), all asked for at once
    h = await harness(rate=8e6, connections=32, per_host=32, segment_min=8 << 20)

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 1
    assert h.on_disk(X2D) == h.body(X2D)
    gets = h.gets(X2D)
    pieces = SIZES[X2D] // MIN_PIECE
    assert len(gets) >= pieces and all(header(r, "Range") for r in gets)
    assert h.emu.peak_downloads >= pieces  # at once, not a first answer then the rest
    assert merge(requested(r, SIZES[X2D]) for r in gets) == [(0, SIZES[X2D])]


async def test_small_file_stays_one_request(harness):
    h = await harness()

    assert (await h.fetch(X1D)).state is ProductState.DONE

    [request] = h.gets(X1D)
    assert header(request, "Range") is None
    assert h.on_disk(X1D) == h.body(X1D)


async def test_cancelled_segmented_transfer_resumes_only_what_is_missing(harness):
    h = await harness(rate=2e6)  # slow enough for a record (each second) before the end
    part = part_path(h.transfer(X2D).dest)

    def record() -> Control | None:
        return read_control(part, part.stat().st_size) if part.exists() else None

    task = asyncio.create_task(h.fetch(X2D))
    await until(
        lambda: (r := record()) is not None and r.held > 4_000_000 and len(r.done) >= 2,
        "several segments under way",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    record = record()
    assert record is not None and 0 < record.held < SIZES[X2D]
    assert part.stat().st_size == SIZES[X2D]  # preallocated, and the record says what is in
    assert not h.transfer(X2D).dest.exists()
    body = h.body(X2D)
    data = part.read_bytes()
    for start, end in record.done:  # what the record claims is really there
        assert data[start:end] == body[start:end]

    before = len(h.emu.requests)
    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE
    assert outcome.resumed_from == record.held
    assert h.on_disk(X2D) == body
    again = h.gets(X2D, before)
    assert again and all(header(r, "Range") for r in again)
    for request in again:
        wanted = requested(request, SIZES[X2D])
        assert not any(overlaps(wanted, done) for done in record.done), (wanted, record.done)


async def test_server_ignoring_range_falls_back_to_one_whole_transfer(harness):
    h = await harness(rate=20e6)
    h.emu.faults.add(Fault(FaultKind.IGNORE_RANGE, match=X2D, times=None))

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE
    assert h.on_disk(X2D) == h.body(X2D)
    part = part_path(h.transfer(X2D).dest)
    assert not part.exists() and not control_path(part).exists()
    last = h.gets(X2D)[-1]
    assert header(last, "Range") is None and last.body_bytes_sent == SIZES[X2D]


async def test_a_record_that_does_not_match_the_part_is_not_trusted(harness):
    h = await harness()
    part = part_path(h.transfer(X2D).dest)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # the control file claims bytes the part cannot hold
    write_control(part, Control(SIZES[X2D], None, ((0, SIZES[X2D] - 10),)))

    assert (await h.fetch(X2D)).state is ProductState.DONE
    assert h.on_disk(X2D) == h.body(X2D)
    # started again from zero: every byte asked for again (a fresh file's ranges go out
    # at once, so the first GET recorded need not be the one from byte 0)
    gets = h.gets(X2D)
    assert min(requested(get, SIZES[X2D])[0] for get in gets) == 0
    assert sum(get.body_bytes_sent for get in gets) >= SIZES[X2D]


async def test_a_control_file_write_cut_by_a_kill_leaves_no_temporary_file(harness):
    h = await harness()
    part = prepare_gaps(h, X2D, [(1_000_000, 3_000_000)])
    # killed inside write_control: its temporary file stays beside the control file
    stray = control_path(part).with_name(f"{control_path(part).name}.tmp")
    stray.write_text("{")

    assert (await h.fetch(X2D)).state is ProductState.DONE
    assert h.on_disk(X2D) == h.body(X2D)
    assert sorted(p.name for p in part.parent.iterdir()) == [X2D]


def prepare_gaps(h: Harness, name: str, gaps: list[tuple[int, int]]) -> Path:
    """A preallocated part holding the true bytes except zeros in ``gaps``, recorded."""
    body = bytearray(h.body(name))
    for start, end in gaps:
        body[start:end] = bytes(end - start)
    part = part_path(h.transfer(name).dest)
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(body))
    write_control(part, Control(len(body), None, tuple(missing_complement(len(body), gaps))))
    return part


def missing_complement(size: int, gaps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return missing(size, gaps)


async def test_reset_inside_one_segment_retries_only_that_segment(harness):
    # one connection per gap, none spare; cut near its end, the rest of a gap is too
    # small for a freed connection to take a share of it: one request per gap, one retry
    h = await harness(rate=20e6, connections=3, per_host=3)
    piece = MIN_PIECE + MIN_PIECE // 2
    gaps = [(1_000_000, 1_000_000 + piece), (6_000_000, 6_000_000 + piece)]
    gaps.append((12_000_000, 12_000_000 + piece))
    prepare_gaps(h, X2D, gaps)
    h.emu.faults.add(Fault(FaultKind.RESET, match=X2D, after=1_400_000, times=1))

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert outcome.resumed_from == SIZES[X2D] - 3 * piece
    assert h.on_disk(X2D) == h.body(X2D)
    gets = h.gets(X2D)
    assert len(gets) == 4  # three segments, and one retry
    first_three = sorted(requested(r, SIZES[X2D]) for r in gets[:3])
    assert first_three == gaps
    cut = next(r for r in gets[:3] if r.body_bytes_sent < piece)
    cut_start, cut_end = requested(cut, SIZES[X2D])
    retry_start, retry_end = requested(gets[3], SIZES[X2D])
    assert cut_start < retry_start <= cut_start + 1_400_000 and retry_end == cut_end


async def test_connection_budget_is_never_exceeded(harness):
    h = await harness(rate=8e6, connections=4, per_host=4)

    outcomes = await asyncio.gather(*(h.fetch(name) for name in SIZES))

    assert all(o.state is ProductState.DONE for o in outcomes)
    for name in SIZES:
        assert h.on_disk(name) == h.body(name)
    assert 2 <= h.emu.peak_downloads <= 4
    # the large files used the spare connections once the small ones were done
    assert any(header(r, "Range") for r in h.gets("x2d"))


async def test_per_host_cap_holds_below_the_total(harness):
    h = await harness(rate=8e6, connections=16, per_host=3)

    outcomes = await asyncio.gather(h.fetch(X2D), h.fetch(FLT))

    assert all(o.state is ProductState.DONE for o in outcomes)
    assert h.emu.peak_downloads <= 3


def test_control_file_is_json_a_person_can_read(tmp_path: Path):
    part = tmp_path / "f.fits.part"
    write_control(part, Control(10, '"e"', ((0, 4),)))
    doc = json.loads(control_path(part).read_text())
    assert doc == {"format": 2, "size": 10, "validator": '"e"', "done": [[0, 4]]}
