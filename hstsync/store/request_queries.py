"""The statements that write request rows (reading them is ``reads.py``).

Free functions taking the sqlite-utils ``Database`` (``db``) that the
:class:`~hstsync.store.db.Store` hands out inside one of its transactions; they never
begin or end one, so each runs whole or not at all. ``path`` is the database file, for
the messages of a missing row. Rows come back as the dataclasses of ``rows.py``. What
each write means for a caller is documented on the ``Store`` method that calls it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hstsync.errors import StoreError
from hstsync.model import TIME_FORMAT, ProductState, Request, RequestState, relookup_delay
from hstsync.store.rows import RequestRow, first_row, request_row, utc_now
from hstsync.store.schema import FACTS, ORPHANS, PRODUCTS, REQUESTS

# ``db`` is a sqlite_utils.Database, which is untyped: ``Any`` in every signature.


def require(db: Any, name: str, path: Path) -> dict[str, Any]:
    """The stored row of request ``name``; a :class:`StoreError` when there is none."""
    row = first_row(db.table(REQUESTS).rows_where("name = ?", [name]))
    if row is None:
        raise StoreError(f"no request named {name!r} in {path}")
    return row


def upsert(db: Any, request: Request, manifest: str) -> RequestRow:
    digest, now = request.digest(), utc_now()
    table = db.table(REQUESTS)
    old = first_row(table.rows_where("name = ?", [request.name]))
    if old is None:
        table.insert(
            {
                "name": request.name,
                "proposal_ids": json.dumps(list(request.proposal_ids)),
                "digest": digest,
                "manifest": manifest,
                "state": str(RequestState.QUEUED),
                "last_error": None,
                "created": now,
                "updated": now,
                "resolved_at": None,
                "collection": request.collection,
            }
        )
    elif old["digest"] != digest:
        table.update(
            request.name,
            {
                "proposal_ids": json.dumps(list(request.proposal_ids)),
                "digest": digest,
                "manifest": manifest,
                "state": str(RequestState.QUEUED),
                "last_error": None,
                "updated": now,
                "resolved_at": None,
                "next_lookup": None,
                "lookup_failures": 0,
                # what was mirrored answered another request
                "mirrored_at": None,
                "collection": request.collection,
                "planned": 0,
            },
        )
    elif old["manifest"] != manifest:
        # same request, file moved: follow the file, keep the state
        table.update(request.name, {"manifest": manifest})
    return request_row(table.get(request.name))


def record_invalid(db: Any, name: str, manifest: str, reason: str) -> None:
    now = utc_now()
    table = db.table(REQUESTS)
    changes = {
        # empty: differs from every real digest, so the next valid manifest is queued
        "digest": "",
        "manifest": manifest,
        "state": str(RequestState.INVALID),
        "last_error": reason,
        "updated": now,
    }
    if first_row(table.rows_where("name = ?", [name])) is None:
        table.insert(
            {"name": name, "proposal_ids": "[]", "created": now} | changes | {"resolved_at": None}
        )
    else:
        table.update(name, changes)


def set_state(
    db: Any, path: Path, name: str, state: RequestState, last_error: str | None, *, resolved: bool
) -> None:
    now = utc_now()
    changes: dict[str, Any] = {"state": str(state), "last_error": last_error, "updated": now}
    if resolved:
        changes["resolved_at"] = now
    require(db, name, path)
    db.table(REQUESTS).update(name, changes)


def lookup_failed(db: Any, path: Path, name: str, error: str) -> RequestRow:
    now = datetime.now(UTC)
    failures = int(require(db, name, path)["lookup_failures"] or 0) + 1
    due = now + timedelta(seconds=relookup_delay(failures))
    table = db.table(REQUESTS)
    table.update(
        name,
        {
            "last_error": error,
            "lookup_failures": failures,
            "next_lookup": due.strftime(TIME_FORMAT),
            "updated": utc_now(),
        },
    )
    return request_row(table.get(name))


def retry_lookups(db: Any, request: str | None) -> int:
    where, args = "next_lookup IS NOT NULL AND state != ?", [str(RequestState.INVALID)]
    if request is not None:
        where += " AND name = ?"
        args.append(request)
    sql = f"UPDATE requests SET next_lookup = ? WHERE {where}"
    return int(db.execute(sql, [utc_now(), *args]).rowcount)


def note_new_files(db: Any, name: str) -> None:
    db.table(REQUESTS).update(name, {"last_new_files": utc_now()})


def note_planned(db: Any, path: Path, name: str, planned: int) -> None:
    require(db, name, path)
    db.table(REQUESTS).update(name, {"planned": planned})


def note_error(db: Any, path: Path, name: str, error: str) -> None:
    require(db, name, path)
    db.table(REQUESTS).update(name, {"last_error": error, "updated": utc_now()})


def begin_pass(db: Any, path: Path, name: str) -> None:
    require(db, name, path)
    db.table(REQUESTS).update(name, {"pass_started": utc_now()})


def end_pass(db: Any, path: Path, name: str, files: int, size: int) -> RequestRow:
    require(db, name, path)
    now = utc_now()
    # mirrored: every listed product present and the lookup answered, which is what
    # the pass just settled as "done" without an error ("last re-sync failed: …")
    db.execute(
        f"UPDATE {REQUESTS} SET pass_ended = ?, mirrored_at = CASE WHEN state = ? AND "
        "last_error IS NULL THEN ? ELSE mirrored_at END WHERE name = ?",
        [now, str(RequestState.DONE), now, name],
    )
    if files:
        db.table(REQUESTS).update(name, {"last_new_files": now})
        add_to_facts(db, fetched_files=files, fetched_bytes=size)
    return request_row(db.table(REQUESTS).get(name))


def add_to_facts(db: Any, **counts: int) -> None:
    for key, count in counts.items():
        db.execute(
            f"INSERT INTO {FACTS} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            [key, count],
        )


def set_facts(db: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        db.execute(
            f"INSERT INTO {FACTS} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )


def remove(db: Any, name: str) -> None:
    """Delete a request and its products; the files it had mirrored that no other
    request lists become orphans (they stay in the mirror until ``prune``)."""
    db.execute(
        f"INSERT OR REPLACE INTO {ORPHANS} (relpath, size, since) "
        f"SELECT relpath, MAX(size, 0), ? FROM {PRODUCTS} AS p "
        "WHERE p.request = ? AND p.state IN (?, ?) AND p.relpath IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {PRODUCTS} AS o "
        "WHERE o.relpath = p.relpath AND o.request != p.request)",
        [utc_now(), name, str(ProductState.DONE), str(ProductState.WITHDRAWN)],
    )
    db.table(PRODUCTS).delete_where("request = ?", [name])
    db.table(REQUESTS).delete_where("name = ?", [name])


def finish_verify(db: Any, name: str, verdicts: Mapping[str, int]) -> None:
    db.table(REQUESTS).update(
        name, {"last_verify": utc_now(), "verify_summary": json.dumps(dict(verdicts))}
    )
