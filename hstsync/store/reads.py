"""The statements that only read: a request, all requests, a request's products, and the
per-request summaries ``hstsync status`` shows.

Free functions over a plain :class:`sqlite3.Connection` (the :class:`~hstsync.store.db.Store`
hands out its own, inside one read transaction), never sqlite-utils: a read-only store
(``hstsync status``, the daemon's status endpoint) does not import sqlite-utils at all,
which with numpy behind it costs more than the whole status query. Rows come back as
the dataclasses of ``rows.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from hstsync.model import ProductState
from hstsync.store.rows import (
    Facts,
    ProductRow,
    RequestRow,
    RequestSummary,
    counts,
    facts_of,
    product_row,
    request_row,
)
from hstsync.store.schema import (
    FACTS,
    ORPHANS,
    ORPHANS_VERSION,
    PASSES_VERSION,
    PRODUCTS,
    REQUESTS,
    TALLIES_VERSION,
    user_version,
)


def _rows(conn: sqlite3.Connection, sql: str, args: Collection[Any] = ()) -> list[dict[str, Any]]:
    """Each row of ``sql`` as a dict of its columns (what sqlite-utils hands out)."""
    cursor = conn.execute(sql, tuple(args))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def get_request(conn: sqlite3.Connection, name: str) -> RequestRow | None:
    rows = _rows(conn, f"SELECT * FROM {REQUESTS} WHERE name = ?", [name])
    return request_row(rows[0]) if rows else None


def all_requests(conn: sqlite3.Connection) -> list[RequestRow]:
    return [request_row(r) for r in _rows(conn, f"SELECT * FROM {REQUESTS} ORDER BY name")]


def products(
    conn: sqlite3.Connection, request: str, states: Collection[ProductState] | None = None
) -> list[ProductRow]:
    where, args = "request = ?", [request]
    if states is not None:
        if not states:
            return []
        where += f" AND state IN ({', '.join('?' * len(states))})"
        args += [str(s) for s in states]
    sql = f"SELECT * FROM {PRODUCTS} WHERE {where} ORDER BY obs_id, filename, data_uri"
    return [product_row(r) for r in _rows(conn, sql, args)]


def ordered_page(
    conn: sqlite3.Connection,
    request: str,
    after: tuple[str, str, str] | None,
    limit: int,
    unseen_by: int | None = None,
) -> list[ProductRow]:
    """Up to ``limit`` products of ``request`` in list order (obs_id, filename, dataURI),
    after the product whose (obs_id, filename, dataURI) is ``after``; with
    ``unseen_by``, only those that resolution did not list."""
    where = "request = ?"
    args: list[Any] = [request]
    if unseen_by is not None:
        where += " AND seen != ?"
        args.append(unseen_by)
    if after is not None:
        where += " AND (obs_id, filename, data_uri) > (?, ?, ?)"
        args += list(after)
    sql = f"SELECT * FROM {PRODUCTS} WHERE {where} ORDER BY obs_id, filename, data_uri LIMIT ?"
    return [product_row(r) for r in _rows(conn, sql, [*args, limit])]


def first_failed(conn: sqlite3.Connection, request: str) -> ProductRow | None:
    """The first failed product of ``request`` that says why, in list order."""
    rows = _rows(
        conn,
        f"SELECT * FROM {PRODUCTS} WHERE request = ? AND state = ? AND last_error IS NOT NULL"
        " AND last_error != '' ORDER BY obs_id, filename, data_uri LIMIT 1",
        [request, str(ProductState.FAILED)],
    )
    return product_row(rows[0]) if rows else None


def summaries(conn: sqlite3.Connection, name: str | None) -> list[RequestSummary]:
    """Each request (or only ``name``) with its counts and bytes."""
    where, args = ("WHERE request = ?", [name]) if name is not None else ("", [])
    # A few rows per request, kept by triggers (schema.TALLIES): O(requests). A
    # database an older daemon still holds (read-only here) has no tallies yet: one
    # pass over the (request, state, size, bytes_done) index instead.
    sql = (
        f"SELECT request, state, n, total, done FROM tallies {where}"
        if user_version(conn) >= TALLIES_VERSION
        else f"""
        SELECT request, state, COUNT(*) AS n,
               SUM(MAX(size, 0)) AS total,
               SUM(CASE WHEN state = 'done' THEN MAX(size, 0)
                        ELSE MIN(MAX(bytes_done, 0), MAX(size, 0)) END) AS done
        FROM products {where}
        GROUP BY request, state
        """
    )
    tallies: dict[str, dict[ProductState, int]] = {}
    totals: dict[str, list[int]] = {}
    if name is None:
        requests = all_requests(conn)
    else:
        one = get_request(conn, name)
        requests = [] if one is None else [one]
    for request, state, n, total, done in conn.execute(sql, args):
        tallies.setdefault(request, {})[ProductState(state)] = n
        sums = totals.setdefault(request, [0, 0])
        if state != ProductState.WITHDRAWN:  # bytes of what the archive lists
            sums[0] += total
            sums[1] += done
    return [
        RequestSummary(
            request=r,
            counts=counts(tallies.get(r.name, {})),
            bytes_total=totals.get(r.name, [0, 0])[0],
            bytes_done=totals.get(r.name, [0, 0])[1],
        )
        for r in requests
    ]


def facts(conn: sqlite3.Connection) -> Facts:
    """The store's facts; all empty in a database an older hstsync still holds."""
    if user_version(conn) < PASSES_VERSION:
        return Facts()
    return facts_of(dict(conn.execute(f"SELECT key, value FROM {FACTS}").fetchall()))


def sizes_sent(conn: sqlite3.Connection, relpaths: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(relpaths), 500):
        chunk = relpaths[start : start + 500]
        cursor = conn.execute(
            f"SELECT relpath, size FROM {PRODUCTS} WHERE relpath IN "
            f"({', '.join('?' * len(chunk))}) AND state = ? AND size_note IS NOT NULL",
            [*chunk, str(ProductState.DONE)],
        )
        found.update((str(path), int(size)) for path, size in cursor)
    return found


def due_for_verify(
    conn: sqlite3.Connection, request: str, before: str, share: int, recent: str
) -> list[ProductRow]:
    checked = "COALESCE(verified, done_at, updated)"
    done = str(ProductState.DONE)
    (late,) = conn.execute(
        f"SELECT COUNT(*) FROM {PRODUCTS} WHERE request = ? AND state = ? AND {checked} < ?",
        [request, done, before],
    ).fetchone()
    sql = (
        f"SELECT * FROM {PRODUCTS} WHERE request = ? AND state = ? AND {checked} < ? "
        f"ORDER BY {checked}, id LIMIT ?"
    )
    limit = max(int(late), share)
    return [product_row(r) for r in _rows(conn, sql, [request, done, recent, limit])]


def orphans(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Files mirrored for a request since removed that no request lists now, with sizes."""
    if user_version(conn) < ORPHANS_VERSION:
        return []
    return [
        (str(path), int(size))
        for path, size in conn.execute(
            f"SELECT relpath, size FROM {ORPHANS} AS o WHERE NOT EXISTS "
            f"(SELECT 1 FROM {PRODUCTS} AS p WHERE p.relpath = o.relpath) ORDER BY relpath"
        )
    ]


def withdrawn(conn: sqlite3.Connection, request: str | None) -> list[ProductRow]:
    """Withdrawn products (of ``request``, or all), in the order of the lists."""
    where, args = "state = ?", [str(ProductState.WITHDRAWN)]
    if request is not None:
        where, args = where + " AND request = ?", [*args, request]
    sql = f"SELECT * FROM {PRODUCTS} WHERE {where} ORDER BY request, obs_id, filename, data_uri"
    return [product_row(r) for r in _rows(conn, sql, args)]


def owned_elsewhere(conn: sqlite3.Connection, relpath: str, request: str) -> bool:
    """Whether a request other than ``request`` lists a product at ``relpath``."""
    sql = f"SELECT 1 FROM {PRODUCTS} WHERE relpath = ? AND request != ? AND state != ? LIMIT 1"
    return conn.execute(sql, [relpath, request, str(ProductState.WITHDRAWN)]).fetchone() is not None
