"""The daemon's scheduling decisions, without I/O: which manifests are taken, which
requests start a pass now (waiting, re-sync, a failed lookup's retry), how long the
scheduler sleeps, and the pause after the database refused a write."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hstsync.model import RequestState
from hstsync.service.daemon.schedule import (
    MIN_SLEEP_SECONDS,
    STORE_BACKOFF_MAX_SECONDS,
    STORE_BACKOFF_SECONDS,
    Start,
    Take,
    due_at,
    manifest_due,
    next_wake,
    start_due,
    store_backoff,
)
from hstsync.store import RequestRow

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = 86400.0
SEC = 10**9


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def row(
    state: RequestState,
    *,
    last_pass: datetime = NOW,
    next_lookup: datetime | None = None,
) -> RequestRow:
    return RequestRow(
        name="7291",
        proposal_ids=("7291",),
        digest="d",
        manifest="7291.toml",
        state=state,
        last_error=None,
        created=stamp(last_pass),
        updated=stamp(last_pass),
        resolved_at=stamp(last_pass),
        next_lookup=None if next_lookup is None else stamp(next_lookup),
    )


def stat(size: int, mtime: float, ctime: float | None = None) -> os.stat_result:
    """File metadata as os.stat returns it; nothing is read from disk."""
    ctime = mtime if ctime is None else ctime
    return os.stat_result(
        (0o100644, 1, 1, 1, 0, 0, size, int(mtime), int(mtime), int(ctime)),
        {
            "st_mtime": mtime,
            "st_ctime": ctime,
            "st_mtime_ns": int(mtime * SEC),
            "st_ctime_ns": int(ctime * SEC),
        },
    )


def version(info: os.stat_result) -> tuple[int, int]:
    return (info.st_size, info.st_mtime_ns)


# -- manifests ----------------------------------------------------------------------------------


def due(info: os.stat_result, now: float, **kw: object) -> Take:
    args: dict[str, object] = {
        "previous": None,
        "taken": None,
        "renamed": None,
        "first": False,
        "settle": 0.5,
    }
    args.update(kw)
    return manifest_due(info, now, **args)  # type: ignore[arg-type]


def test_a_manifest_already_taken_in_this_version_is_not_taken_again():
    info = stat(20, 1000.0)
    assert due(info, 2000.0, previous=version(info), taken=version(info)) is Take.KNOWN


def test_a_manifest_written_in_place_waits_until_still_for_the_settle_delay():
    info = stat(20, 1000.0)
    assert due(info, 1000.2, previous=version(info)) is Take.LATER  # too recent
    assert due(info, 1001.0) is Take.LATER  # not seen still yet
    assert due(info, 1001.0, previous=version(info)) is Take.NOW


def test_a_manifest_changed_since_it_was_taken_is_taken_again_once_settled():
    old, new = stat(20, 1000.0), stat(25, 1005.0)
    assert due(new, 1010.0, previous=version(old), taken=version(old)) is Take.LATER
    assert due(new, 1010.0, previous=version(new), taken=version(old)) is Take.NOW


def test_a_manifest_renamed_into_place_or_finished_is_taken_at_once():
    info = stat(20, 1000.0)
    assert due(info, 1000.0, renamed=version(info)) is Take.NOW
    assert due(stat(20, 1000.0, ctime=1000.1), 1000.1) is Take.NOW  # mv, cp -p, touch
    # a rename seen for another version does not count for this one
    assert due(info, 1000.0, renamed=(19, info.st_mtime_ns)) is Take.LATER


def test_at_the_daemons_first_look_every_manifest_counts_as_still():
    info = stat(20, 1000.0)
    assert due(info, 1001.0, first=True) is Take.NOW
    assert due(info, 1000.1, first=True) is Take.LATER  # still too recent


# -- requests -----------------------------------------------------------------------------------


def test_a_queued_or_interrupted_request_starts_at_once():
    for state in (RequestState.QUEUED, RequestState.RESOLVING, RequestState.DOWNLOADING):
        assert start_due(row(state), NOW, DAY) is Start.WAITING


def test_a_settled_request_is_resynced_resync_every_after_its_last_pass():
    for state in (RequestState.DONE, RequestState.INCOMPLETE):
        settled = row(state, last_pass=NOW - timedelta(hours=23))
        assert start_due(settled, NOW, DAY) is None
        assert start_due(settled, NOW + timedelta(hours=1), DAY) is Start.RESYNC
        assert due_at(settled, DAY, NOW) == NOW + timedelta(hours=1)


def test_a_failed_lookup_is_tried_again_at_its_next_lookup_not_a_day_later():
    failed = row(RequestState.INCOMPLETE, next_lookup=NOW + timedelta(minutes=2))
    assert start_due(failed, NOW, DAY) is None
    assert start_due(failed, NOW + timedelta(minutes=2), DAY) is Start.RELOOKUP
    assert str(Start.RELOOKUP) == "re-sync after a failed lookup"


def test_an_invalid_request_waits_for_a_new_manifest_unless_a_lookup_failed():
    invalid = row(RequestState.INVALID, last_pass=NOW - timedelta(days=9))
    assert due_at(invalid, DAY, NOW) is None
    assert start_due(invalid, NOW, DAY) is None
    relook = row(RequestState.INVALID, next_lookup=NOW)
    assert start_due(relook, NOW, DAY) is Start.RELOOKUP


def test_the_scheduler_sleeps_until_the_first_request_is_due_at_most_the_rescan():
    soon = row(RequestState.DONE, last_pass=NOW - timedelta(seconds=DAY - 5))
    later = row(RequestState.INCOMPLETE, next_lookup=NOW + timedelta(seconds=20))
    assert next_wake([soon, later], NOW, DAY, longest=30.0) == 5.0
    assert next_wake([later], NOW, DAY, longest=30.0) == 20.0
    assert next_wake([later], NOW, DAY, longest=3.0) == 3.0
    assert next_wake([], NOW, DAY, longest=30.0) == 30.0
    overdue = row(RequestState.DONE, last_pass=NOW - timedelta(days=3))
    assert next_wake([overdue], NOW, DAY, longest=30.0) == MIN_SLEEP_SECONDS


def test_the_pause_after_a_refused_write_doubles_up_to_its_cap():
    pauses = [STORE_BACKOFF_SECONDS]
    for _ in range(12):
        pauses.append(store_backoff(pauses[-1]))
    assert store_backoff(0.0) == STORE_BACKOFF_SECONDS
    assert pauses[:3] == [2.0, 4.0, 8.0]
    assert max(pauses) == pauses[-1] == STORE_BACKOFF_MAX_SECONDS


# -- a clock that jumps backwards ----------------------------------------------------------
# Stamps written while the clock was ahead (a machine that booted with a wrong clock, then
# corrected by NTP) lie in the future. Waiting for the clock to catch up would stop
# re-syncs and lookup retries for as long as the jump.


def test_a_last_pass_stamped_later_than_now_makes_the_resync_due_now():
    ahead = row(RequestState.DONE, last_pass=NOW + timedelta(days=400))
    assert start_due(ahead, NOW, DAY) is Start.RESYNC
    assert due_at(ahead, DAY, NOW) == NOW
    assert next_wake([ahead], NOW, DAY, longest=30.0) == MIN_SLEEP_SECONDS


def test_a_lookup_retry_set_further_ahead_than_any_backoff_is_due_now():
    ahead = row(RequestState.INCOMPLETE, next_lookup=NOW + timedelta(days=400))
    assert start_due(ahead, NOW, DAY) is Start.RELOOKUP
    assert next_wake([ahead], NOW, DAY, longest=30.0) == MIN_SLEEP_SECONDS
    # a retry within the longest backoff (an hour) still waits for its time
    hour = row(RequestState.INCOMPLETE, next_lookup=NOW + timedelta(minutes=59))
    assert start_due(hour, NOW, DAY) is None
    assert due_at(hour, DAY, NOW) == NOW + timedelta(minutes=59)


def test_a_stamp_in_the_past_is_used_as_it_is():
    settled = row(RequestState.DONE, last_pass=NOW - timedelta(hours=1))
    assert due_at(settled, DAY, NOW) == NOW + timedelta(hours=23)
