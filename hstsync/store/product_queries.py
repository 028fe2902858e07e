"""The statements that write product rows: planning, marking, progress, recovery.
(Reading them, and the summaries, is ``reads.py``.)

Free functions taking the sqlite-utils ``Database`` (``db``) that the
:class:`~hstsync.store.db.Store` hands out inside one of its transactions; they never
begin or end one, so each runs whole or not at all. ``path`` is the database file, for
the messages of a missing row. What each write means for a caller is documented on the
``Store`` method that calls it.

sqlite-utils updates or deletes rows it can name (a batch of new products goes in with
one prepared statement: they all have the same columns); statements that change
many rows by a condition (some of which touch requests too: a product put back in the
queue puts its request back) are written
out here because sqlite-utils has no API for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hstsync.errors import StoreError
from hstsync.model import Product, ProductState, RequestState
from hstsync.store import request_queries
from hstsync.store.rows import (
    Delisted,
    PlanDiff,
    ProductRow,
    catalogue_columns,
    product_row,
    utc_now,
)
from hstsync.store.schema import PRODUCTS, REQUESTS

# ``db`` is a sqlite_utils.Database, which is untyped: ``Any`` in every signature.

# Bound parameters per statement stay well under SQLite's limit (32766 since 3.32).
_CHUNK = 500


def replace(db: Any, path: Path, request: str, products: Sequence[Product]) -> PlanDiff:
    stamp = begin_resolution(db, path, request)
    diff, _ = record_batch(db, path, request, products, stamp)
    delisted = end_resolution(db, request, stamp)
    return dataclasses.replace(diff, removed=delisted.removed + len(delisted.withdrawn))


def begin_resolution(db: Any, path: Path, request: str) -> int:
    """A new resolution of ``request``: its stamp, for :func:`record_batch`."""
    request_queries.require(db, request, path)
    row = db.conn.execute(
        f"UPDATE {REQUESTS} SET resolution = resolution + 1 WHERE name = ? RETURNING resolution",
        [request],
    ).fetchone()
    return int(row[0])


def record_batch(
    db: Any, path: Path, request: str, products: Sequence[Product], stamp: int
) -> tuple[PlanDiff, list[ProductRow]]:
    """Record one batch of a resolution; the diff and the batch's rows as stored."""
    fresh: dict[str, Product] = {}
    for product in products:
        fresh.setdefault(product.data_uri, product)
    now = utc_now()
    restart = {
        "state": str(ProductState.PENDING),
        "bytes_done": 0,
        "attempts": 0,
        "last_error": None,
        "updated": now,
        "done_at": None,
    }
    new: list[dict[str, Any]] = []
    changed = unchanged = 0
    request_queries.require(db, request, path)
    table = db.table(PRODUCTS)
    stored = {r["data_uri"]: r for r in _rows_of(db, request, list(fresh))}
    #: rows only this resolution's stamp changes: one statement for them all
    seen: list[tuple[int, int]] = []
    #: rows as read, for products whose row this batch leaves as it was
    kept: list[ProductRow] = []
    #: rows as inserted: what they hold is known without reading them back
    added: list[ProductRow] = []
    for uri, product in fresh.items():
        columns = catalogue_columns(product)
        old = stored.get(uri)
        if old is None:
            new.append({"request": request, **columns, **restart, "seen": stamp})
            added.append(
                ProductRow(
                    request,
                    product,
                    ProductState.PENDING,
                    bytes_done=0,
                    attempts=0,
                    last_error=None,
                    updated=now,
                    catalogue_size=product.size,
                    relpath=columns["relpath"],
                )
            )
        elif new_version(old, product) or old["state"] == str(ProductState.WITHDRAWN):
            # the file in the mirror is an older version: fetched again, the old one
            # kept in the attic (a file never landed has nothing to supersede)
            supersede = int(old["state"] == str(ProductState.DONE) or bool(old["supersede"]))
            relisted = old["state"] == str(ProductState.WITHDRAWN) and not new_version(old, product)
            table.update(
                old["id"],
                columns
                | restart
                | {"size_note": None, "seen": stamp, "supersede": 0 if relisted else supersede},
            )
            changed += 1
        else:
            unchanged += 1
            # "size" is ours once a transfer recorded the server's: a catalogue
            # still wrong the same way changes nothing
            drift = {k: v for k, v in columns.items() if k != "size" and old[k] != v}
            if drift:
                table.update(old["id"], drift | {"seen": stamp})
            else:
                kept.append(product_row(old))
                if old["seen"] != stamp:
                    seen.append((stamp, old["id"]))
    db.conn.executemany(f"UPDATE {PRODUCTS} SET seen = ? WHERE id = ?", seen)
    if new:
        # one prepared statement for the batch: sqlite-utils' insert_all, which builds
        # its statements chunk by chunk for rows of any shape, was half of recording
        # a new product, and these rows all have the same columns
        names = list(new[0])
        db.conn.executemany(
            f"INSERT INTO {PRODUCTS} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [[row[name] for name in names] for row in new],
        )
    # the updated ones as now stored (a nightly re-sync of an unchanged program reads none)
    unread = {row.product.data_uri for row in kept} | {row.product.data_uri for row in added}
    written = [uri for uri in fresh if uri not in unread]
    rows = kept + added + [product_row(r) for r in _rows_of(db, request, written)]
    return PlanDiff(new=len(new), changed=changed, unchanged=unchanged, removed=0), rows


def new_version(old: Mapping[str, Any], product: Product) -> bool:
    """Whether a freshly resolved catalogue row marks a new version of the stored one:
    another size, other data rights (exclusive turning public), another ``prvversion``
    (where the archive fills it), or another reason it cannot be fetched."""
    return (
        old["catalogue_size"] != product.size
        or old["data_rights"] != product.data_rights
        or old["problem"] != product.problem
        or bool(
            old["prvversion"] and product.prvversion and old["prvversion"] != product.prvversion
        )
    )


def end_resolution(db: Any, request: str, stamp: int) -> Delisted:
    """The resolution ``stamp`` listed everything: what it did not list is withdrawn (a
    file was landed for it: the row stays, its file kept) or deleted (nothing landed),
    and the request's failed lookups are forgotten."""
    withdrawn = db.conn.execute(
        f"UPDATE {PRODUCTS} SET state = ?, supersede = 0, updated = ? "
        "WHERE request = ? AND seen != ? AND state = ? RETURNING data_uri, relpath",
        [str(ProductState.WITHDRAWN), utc_now(), request, stamp, str(ProductState.DONE)],
    ).fetchall()
    removed = db.conn.execute(
        f"DELETE FROM {PRODUCTS} WHERE request = ? AND seen != ? AND state != ?",
        [request, stamp, str(ProductState.WITHDRAWN)],
    ).rowcount
    db.table(REQUESTS).update(request, {"next_lookup": None, "lookup_failures": 0})
    return Delisted(int(removed), [(str(uri), path) for uri, path in withdrawn])


def _rows_of(db: Any, request: str, uris: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(uris), _CHUNK):
        chunk = uris[start : start + _CHUNK]
        cursor = db.conn.execute(
            f"SELECT * FROM {PRODUCTS} WHERE request = ? AND data_uri IN "
            f"({', '.join('?' * len(chunk))})",
            [request, *chunk],
        )
        names = [d[0] for d in cursor.description]
        rows += [dict(zip(names, row, strict=True)) for row in cursor]
    return rows


def mark(
    db: Any,
    path: Path,
    request: str,
    data_uri: str,
    state: ProductState,
    *,
    bytes_done: int | None = None,
    error: str | None = None,
    attempts: int = 0,
    size: int | None = None,
    size_note: str | None = None,
    sha256: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> None:
    # One statement, no read first: this runs twice for every file of a pass. On the
    # right-hand side, columns are the row's values before the update.
    done = state is ProductState.DONE
    changed = db.conn.execute(
        """
        UPDATE products SET
            state = :state,
            updated = :now,
            done_at = :done_at,
            size = CASE WHEN :done AND :size IS NOT NULL THEN :size ELSE size END,
            size_note = CASE WHEN :done AND :size IS NOT NULL THEN :note ELSE size_note END,
            bytes_done = CASE
                WHEN :done THEN COALESCE(:size, MAX(size, 0))
                ELSE COALESCE(:bytes_done, bytes_done) END,
            last_error = COALESCE(:error, CASE WHEN :done THEN NULL ELSE last_error END),
            attempts = attempts + :attempts,
            sha256 = CASE WHEN :done AND :sha256 IS NOT NULL THEN :sha256 ELSE sha256 END,
            etag = CASE WHEN :done AND :sha256 IS NOT NULL THEN :etag ELSE etag END,
            last_modified = CASE WHEN :done AND :sha256 IS NOT NULL THEN :modified
                ELSE last_modified END,
            verified = CASE WHEN :done AND :sha256 IS NOT NULL THEN :now ELSE verified END,
            supersede = CASE WHEN :done THEN 0 ELSE supersede END
        WHERE request = :request AND data_uri = :uri
        """,
        {
            "state": str(state),
            "now": (now := utc_now()),
            "done_at": now if done else None,
            "done": done,
            "size": size,
            "note": size_note,
            "bytes_done": bytes_done,
            "error": error,
            "attempts": attempts,
            "sha256": sha256,
            "etag": etag,
            "modified": last_modified,
            "request": request,
            "uri": data_uri,
        },
    ).rowcount
    if not changed:
        raise StoreError(f"no product {data_uri} in request {request!r} in {path}")


def record_progress(db: Any, updates: Mapping[tuple[str, str], int]) -> None:
    now = utc_now()
    params = [(n, now, req, uri) for (req, uri), n in updates.items()]
    db.conn.executemany(
        "UPDATE products SET bytes_done = ?, updated = ?"
        " WHERE request = ? AND data_uri = ? AND state != 'done'",
        params,
    )


# -- recovery: products back in the queue, and their requests with them ------------------


def recover_interrupted(db: Any) -> tuple[int, int]:
    now = utc_now()
    pending = str(ProductState.PENDING)
    products = db.execute(
        "UPDATE products SET state = ?, updated = ? WHERE state = ?",
        [str(ProductState.PENDING), now, str(ProductState.DOWNLOADING)],
    ).rowcount
    requests = db.execute(
        "UPDATE requests SET state = ?, updated = ? WHERE state IN (?, ?)",
        [
            str(RequestState.QUEUED),
            now,
            str(RequestState.RESOLVING),
            str(RequestState.DOWNLOADING),
        ],
    ).rowcount
    # A pass that ended with products never fetched (a shared transfer lost
    # with another request, a full disk) is taken again, not left to re-sync.
    requests += db.execute(
        "UPDATE requests SET state = ?, updated = ? WHERE state = ?"
        " AND name IN (SELECT request FROM products WHERE state = ?)",
        [str(RequestState.QUEUED), now, str(RequestState.INCOMPLETE), pending],
    ).rowcount
    return int(products), int(requests)


def retry(db: Any, request: str | None) -> int:
    now = utc_now()
    # ... and pending products of a request that ended incomplete without them
    # (a pass that never fetched them), so that they are fetched now too.
    where = (
        "(state IN (?, ?) OR (state = ? AND request IN"
        " (SELECT name FROM requests WHERE state = ?)))"
    )
    args: list[Any] = [
        str(ProductState.FAILED),
        str(ProductState.AUTH_REQUIRED),
        str(ProductState.PENDING),
        str(RequestState.INCOMPLETE),
    ]
    if request is not None:
        where += " AND request = ?"
        args.append(request)
    names = [
        r["request"] for r in db.table(PRODUCTS).rows_where(where, args, select="DISTINCT request")
    ]
    count = db.execute(
        f"UPDATE products SET state = ?, last_error = NULL, updated = ? WHERE {where}",
        [str(ProductState.PENDING), now, *args],
    ).rowcount
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        db.execute(
            "UPDATE requests SET state = ?, last_error = NULL, updated = ?"
            f" WHERE state != ? AND name IN ({', '.join('?' * len(chunk))})",
            [str(RequestState.QUEUED), now, str(RequestState.INVALID), *chunk],
        )
    return int(count)


def record_content(
    db: Any,
    request: str,
    data_uri: str,
    sha256: str | None,
    etag: str | None,
    last_modified: str | None,
    *,
    verified: bool,
) -> None:
    db.conn.execute(
        f"""UPDATE {PRODUCTS} SET
            sha256 = COALESCE(:sha256, sha256),
            etag = COALESCE(:etag, etag),
            last_modified = COALESCE(:modified, last_modified),
            verified = CASE WHEN :verified OR :sha256 IS NOT NULL THEN :now ELSE verified END
        WHERE request = :request AND data_uri = :uri""",
        {
            "sha256": sha256,
            "etag": etag,
            "modified": last_modified,
            "verified": verified,
            "now": utc_now(),
            "request": request,
            "uri": data_uri,
        },
    )
