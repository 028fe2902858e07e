"""The daemon's scheduling decisions, pure: what is due, and when to look again.

Which manifests may be taken now (new or changed, and finished by their writer:
:func:`manifest_due`, :func:`renamed_in`, :func:`settled`), which requests start a
pass now (waiting ones, re-syncs ``resync_every`` after the last pass, failed lookups
at their ``next_lookup``: :func:`start_due`), how long the scheduler may sleep
(:func:`next_wake`) and how long it pauses after the database refused a write
(:func:`store_backoff`). Everything here takes the clock and the file metadata as
arguments; ``service.daemon`` does the looking and the starting.

A stored time later than now means the clock went back after it was stored (a machine
that started with its clock ahead, then corrected): such a time counts as now, and what
waits on it is due now (:func:`due_at`). How long ago it really was cannot be known, and
waiting for the clock to catch up would stop re-syncs for as long as the jump.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from watchfiles import Change

from hstsync.archive import is_manifest_name
from hstsync.model import RELOOKUP_MAX, RequestState
from hstsync.store import RequestRow

#: request states that are re-resolved every ``resync_every``
RESYNCED = (RequestState.DONE, RequestState.INCOMPLETE, RequestState.INVALID)
#: request states whose pass has not finished: queued, or interrupted mid-pass
WAITING = (RequestState.QUEUED, RequestState.RESOLVING, RequestState.DOWNLOADING)
#: the shortest sleep before a due request (the clock is coarse)
MIN_SLEEP_SECONDS = 0.05
#: after the database could not be written (disk full): first pause, and the longest
STORE_BACKOFF_SECONDS = 2.0
STORE_BACKOFF_MAX_SECONDS = 300.0


# -- manifests ------------------------------------------------------------------------------


def renamed_in(changes: Iterable[tuple[Change, str]]) -> set[str]:
    """The manifests a batch of file events shows renamed into place from a temporary
    name: ``NAME.tmp`` (the convention) or rsync's ``.NAME.XXXXXX``.

    A rename is one event pair, the temporary name deleted and the manifest's added,
    so they arrive in one batch; a file written in place is only ever added or
    modified. Names only: the caller checks the file is the one that was renamed.
    """
    gone = {os.path.basename(path) for change, path in changes if change == Change.deleted}
    added = {os.path.basename(path) for change, path in changes if change == Change.added}
    return {
        name
        for name in added
        if is_manifest_name(name)
        and (f"{name}.tmp" in gone or any(g.startswith(f".{name}.") for g in gone))
    }


def finished(info: os.stat_result) -> bool:
    """Whether a file's writer is known to be done with it.

    Its metadata changed after its contents last did (ctime later than mtime): it was
    renamed into place some time after being written (``mv`` of an older file), or its
    times were set after writing (``cp -p``, ``rsync -t``, ``touch``).
    Every write sets both times to the same instant, so a file still being written in
    place never passes; a rename within the same clock tick as the last write (file
    times are coarse: ~4 ms) does not either, which is why the daemon also reads
    renames off its file events (:func:`renamed_in`).
    """
    return info.st_ctime_ns > info.st_mtime_ns


def settled(info: os.stat_result, now: float, *, settle: float, steady: bool) -> bool:
    """Whether a manifest may be read now without catching its writer half-way:
    finished, or last written ``settle`` seconds ago and ``steady`` (the same size and
    mtime at the previous look)."""
    return finished(info) or (now - info.st_mtime >= settle and steady)


class Take(enum.StrEnum):
    """What the scheduler does with a manifest file at one look."""

    #: this version (size, mtime) was taken already
    KNOWN = "known"
    #: new or changed, and finished: read it now
    NOW = "now"
    #: new or changed, but maybe still being written: look again soon
    LATER = "later"


def manifest_due(
    info: os.stat_result,
    now: float,
    *,
    previous: tuple[int, int] | None,
    taken: tuple[int, int] | None,
    renamed: tuple[int, int] | None,
    first: bool,
    settle: float,
) -> Take:
    """Whether a manifest is taken at this look.

    ``previous``, ``taken`` and ``renamed`` are (size, mtime_ns) of the file at the
    previous look, of the version last taken, and just after a rename into place was
    seen (None: none). A version renamed into place is finished; at the first look
    (the daemon starting) every file counts as steady.
    """
    stat = (info.st_size, info.st_mtime_ns)
    if taken == stat:
        return Take.KNOWN
    steady = first or previous == stat
    if renamed == stat or settled(info, now, settle=settle, steady=steady):
        return Take.NOW
    return Take.LATER


# -- requests -------------------------------------------------------------------------------


def parse_time(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def last_pass(row: RequestRow) -> datetime:
    return parse_time(row.resolved_at or row.updated)


def due_at(row: RequestRow, resync_every: float, now: datetime) -> datetime | None:
    """When a settled request is looked up next: a failed lookup's retry (minutes,
    backing off to an hour), else its re-sync ``resync_every`` after the last pass.

    A last pass stamped later than ``now``, or a retry set further ahead than the
    longest backoff, was stamped by a clock that has gone back since: due ``now``.
    """
    if row.state is RequestState.INVALID and row.next_lookup is None:
        return None  # never looked up; waits for a new manifest
    if row.next_lookup is not None:
        retry = parse_time(row.next_lookup)
        return now if retry - now > timedelta(seconds=RELOOKUP_MAX) else retry
    if row.state in RESYNCED:
        last = last_pass(row)
        return now if last > now else last + timedelta(seconds=resync_every)
    return None


class Start(enum.StrEnum):
    """Why a request that is not running starts a pass now."""

    #: queued, or a pass was interrupted: no wait
    WAITING = "waiting"
    RESYNC = "re-sync"
    RELOOKUP = "re-sync after a failed lookup"


def start_due(row: RequestRow, now: datetime, resync_every: float) -> Start | None:
    """Whether a request not running now starts a pass now, and why; None: not yet."""
    if row.state in WAITING:
        return Start.WAITING
    due = due_at(row, resync_every, now)
    if due is None or now < due:
        return None
    return Start.RELOOKUP if row.next_lookup is not None else Start.RESYNC


def next_wake(
    rows: Iterable[RequestRow], now: datetime, resync_every: float, *, longest: float
) -> float:
    """Seconds the scheduler may sleep: until the first of ``rows`` (requests not
    running) is due, at most ``longest``."""
    wait = longest
    for row in rows:
        due = due_at(row, resync_every, now)
        if due is not None:
            wait = min(wait, max((due - now).total_seconds(), MIN_SLEEP_SECONDS))
    return wait


def store_backoff(previous: float) -> float:
    """The pause after the database refused a write, ``previous`` the last one (0 when
    it took the write before): doubling from :data:`STORE_BACKOFF_SECONDS` up to
    :data:`STORE_BACKOFF_MAX_SECONDS`."""
    return min(previous * 2 or STORE_BACKOFF_SECONDS, STORE_BACKOFF_MAX_SECONDS)
