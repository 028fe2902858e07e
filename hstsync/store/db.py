"""The SQLite record of requests and products: the :class:`Store` and its row dataclasses.

With ``schema.py`` (tables, migrations, opening the file, column values), the only
modules that speak SQL; this module imports that one, never the reverse. Owns the one
connection per :class:`Store`, every transaction, the statements behind each read and
write, and the conversion from rows to the values of ``model.py``. Callers see frozen
dataclasses, never dicts.

Transactions: every public write runs in ``BEGIN IMMEDIATE`` … ``COMMIT`` and has
committed when it returns; reads run in one deferred transaction so they see a single
snapshot. The connection is in driver autocommit mode (``isolation_level=None``), so
sqlite-utils' own ``atomic()`` blocks nest inside ours as savepoints.

sqlite-utils inserts, and updates or deletes rows it can name; statements that change
many rows by a condition, and the aggregate behind :meth:`Store.summaries`, are written
out here because sqlite-utils has no API for them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlite_utils import Database

from hstsync.errors import StoreError
from hstsync.model import (
    Counts,
    Product,
    ProductState,
    Request,
    RequestState,
    counts_of,
    relookup_delay,
)
from hstsync.store.schema import (
    BUSY_TIMEOUT_SECONDS,
    PRODUCTS,
    REQUESTS,
    SCHEMA_VERSION,
    TALLIES_VERSION,
    catalogue_columns,
    configure,
    connect_readonly,
    connect_readwrite,
    first_row,
    migrate,
    open_failure,
    too_new,
    utc_now,
)

# Names other modules import from here, including those defined in schema.py.
__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "SCHEMA_VERSION",
    "PlanDiff",
    "ProductRow",
    "RequestRow",
    "RequestSummary",
    "Store",
    "utc_now",
]

log = logging.getLogger(__name__)

# Bound parameters per statement stay well under SQLite's limit (32766 since 3.32).
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RequestRow:
    name: str
    proposal_ids: tuple[str, ...]
    digest: str
    manifest: str
    state: RequestState
    last_error: str | None
    created: str
    updated: str
    resolved_at: str | None
    #: when a failed lookup is tried again (ISO UTC), None when none failed
    next_lookup: str | None = None
    #: lookups that failed in a row
    lookup_failures: int = 0
    #: when a pass last brought new or changed files (schema 2)
    last_new_files: str | None = None


@dataclass(frozen=True, slots=True)
class ProductRow:
    request: str
    product: Product
    state: ProductState
    bytes_done: int
    attempts: int
    last_error: str | None
    updated: str
    #: what the catalogue says (None: it gives no size); ``product.size`` is the size
    #: we expect, the server's once a transfer finished
    catalogue_size: int | None = None
    #: why the two differ, when the server's size won
    size_note: str | None = None


@dataclass(frozen=True, slots=True)
class RequestSummary:
    request: RequestRow
    counts: Counts
    bytes_total: int
    bytes_done: int


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """How a freshly resolved product list differs from the stored one."""

    new: int
    changed: int
    unchanged: int
    removed: int


class Store:
    """One connection to the database file; see the module docstring for the rules."""

    path: Path
    readonly: bool
    _db: Any  # sqlite_utils.Database (untyped)

    def __init__(self, path: Path) -> None:
        """Open ``path`` for reading and writing, creating it and its schema if needed."""
        conn = connect_readwrite(path)
        try:
            self._setup(path, conn, readonly=False)
            self._db.enable_wal()
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise open_failure(path, exc) from exc
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open an existing database without writing to it (``hstsync status``)."""
        store = cls.__new__(cls)
        store._setup(path, connect_readonly(path), readonly=True)
        try:
            version = store.schema_version
        except StoreError:
            store.close()
            raise
        if version == 0:
            store.close()
            raise StoreError(f"{path} holds no hstsync data yet — run `hstsync run` first")
        if version > SCHEMA_VERSION:
            store.close()
            raise StoreError(too_new(path, version))
        return store

    def _setup(self, path: Path, conn: sqlite3.Connection, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        configure(conn, readonly=readonly)
        self._db = Database(conn, execute_plugins=False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._reading("read the schema version"):
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc

    @contextmanager
    def _writing(self, what: str) -> Iterator[Any]:
        if self.readonly:
            raise StoreError(f"cannot {what}: {self.path} is open read-only")
        conn = self._db.conn
        with self._errors(what):
            # IMMEDIATE takes the write lock up front: a deferred transaction that
            # reads first and writes later fails with "database is locked" when another
            # connection wrote meanwhile, whatever the busy timeout.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _reading(self, what: str) -> Iterator[Any]:
        conn = self._db.conn
        with self._errors(what):
            if conn.in_transaction:
                yield self._db
                return
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                yield self._db
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _migrate(self) -> None:
        with self._writing("create the schema") as db:
            migrate(db, self.path)

    # -- requests ----------------------------------------------------------------------

    def upsert_request(self, request: Request, manifest: str) -> RequestRow:
        """Record a parsed manifest; a request whose digest changed is queued afresh."""
        digest, now = request.digest(), utc_now()
        with self._writing(f"record request {request.name}") as db:
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
                    },
                )
            elif old["manifest"] != manifest:
                # same request, file moved: follow the file, keep the state
                table.update(request.name, {"manifest": manifest})
            return _request_row(table.get(request.name))

    def record_invalid(self, name: str, manifest: str, reason: str) -> None:
        """A manifest that could not be parsed: the request is ``invalid`` with the reason.

        Its products, if an earlier version of the manifest listed any, are kept. The
        digest is emptied: it differs from every real one, so the next valid manifest
        of this name, even the same as before, is queued by :meth:`upsert_request`.
        """
        now = utc_now()
        with self._writing(f"record invalid request {name}") as db:
            table = db.table(REQUESTS)
            changes = {
                "digest": "",
                "manifest": manifest,
                "state": str(RequestState.INVALID),
                "last_error": reason,
                "updated": now,
            }
            if first_row(table.rows_where("name = ?", [name])) is None:
                table.insert(
                    {"name": name, "proposal_ids": "[]", "created": now}
                    | changes
                    | {"resolved_at": None}
                )
            else:
                table.update(name, changes)

    def set_request_state(
        self,
        name: str,
        state: RequestState,
        last_error: str | None = None,
        *,
        resolved: bool = False,
    ) -> None:
        """Set a request's state and last error; ``resolved`` also stamps ``resolved_at``."""
        now = utc_now()
        changes: dict[str, Any] = {"state": str(state), "last_error": last_error, "updated": now}
        if resolved:
            changes["resolved_at"] = now
        with self._writing(f"set the state of request {name}") as db:
            table = db.table(REQUESTS)
            if first_row(table.rows_where("name = ?", [name])) is None:
                raise StoreError(f"no request named {name!r} in {self.path}")
            table.update(name, changes)

    def lookup_failed(self, name: str, error: str) -> RequestRow:
        """A lookup of ``name`` failed: count it and schedule the next one.

        The next lookup comes :func:`~hstsync.model.relookup_delay` after now (2, 4, 8 …
        minutes, at most an hour), not after ``resync_every``. ``last_error`` says why.
        """
        now = datetime.now(UTC)
        with self._writing(f"record the failed lookup of {name}") as db:
            table = db.table(REQUESTS)
            row = first_row(table.rows_where("name = ?", [name]))
            if row is None:
                raise StoreError(f"no request named {name!r} in {self.path}")
            failures = int(row["lookup_failures"] or 0) + 1
            due = now + timedelta(seconds=relookup_delay(failures))
            table.update(
                name,
                {
                    "last_error": error,
                    "lookup_failures": failures,
                    "next_lookup": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "updated": utc_now(),
                },
            )
            return _request_row(table.get(name))

    def retry_lookups(self, request: str | None = None) -> int:
        """Failed lookups (of ``request``, or all) due at once; how many."""
        where, args = "next_lookup IS NOT NULL AND state != ?", [str(RequestState.INVALID)]
        if request is not None:
            where += " AND name = ?"
            args.append(request)
        with self._writing("put failed lookups back in the queue") as db:
            return int(
                db.execute(
                    f"UPDATE requests SET next_lookup = ? WHERE {where}", [utc_now(), *args]
                ).rowcount
            )

    def note_new_files(self, name: str) -> None:
        """Stamp ``last_new_files``: a pass just brought new or changed files."""
        with self._writing(f"record new files of request {name}") as db:
            db.table(REQUESTS).update(name, {"last_new_files": utc_now()})

    def get_request(self, name: str) -> RequestRow | None:
        with self._reading(f"read request {name}") as db:
            row = first_row(db.table(REQUESTS).rows_where("name = ?", [name]))
        return None if row is None else _request_row(row)

    def list_requests(self) -> list[RequestRow]:
        with self._reading("list requests") as db:
            return [_request_row(r) for r in db.table(REQUESTS).rows_where(order_by="name")]

    def remove_request(self, name: str) -> None:
        """Forget a request and its products (files on disk are left to the caller)."""
        with self._writing(f"remove request {name}") as db:
            db.table(PRODUCTS).delete_where("request = ?", [name])
            db.table(REQUESTS).delete_where("name = ?", [name])

    # -- products ----------------------------------------------------------------------

    def replace_products(self, request: str, products: Sequence[Product]) -> PlanDiff:
        """Make the stored product list of ``request`` the freshly resolved one.

        New products are pending; one whose catalogue size, data rights or problem
        changed starts over (pending, nothing done, no attempts, no error); the others
        keep their state, and the size a transfer recorded, and get the catalogue's
        current details; products no longer listed are deleted. A ``data_uri`` listed
        twice is taken once (the first). A successful lookup: the request's failed
        lookups are forgotten.
        """
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
        with self._writing(f"record the products of {request}") as db:
            if first_row(db.table(REQUESTS).rows_where("name = ?", [request])) is None:
                raise StoreError(f"no request named {request!r} in {self.path}")
            table = db.table(PRODUCTS)
            stored = {r["data_uri"]: r for r in table.rows_where("request = ?", [request])}
            for uri, product in fresh.items():
                columns = catalogue_columns(product)
                old = stored.get(uri)
                if old is None:
                    new.append({"request": request, **columns, **restart})
                elif (
                    old["catalogue_size"] != product.size
                    or old["data_rights"] != product.data_rights
                    or old["problem"] != product.problem
                ):
                    table.update(old["id"], columns | restart | {"size_note": None})
                    changed += 1
                else:
                    unchanged += 1
                    # "size" is ours once a transfer recorded the server's: a catalogue
                    # still wrong the same way changes nothing
                    drift = {k: v for k, v in columns.items() if k != "size" and old[k] != v}
                    if drift:
                        table.update(old["id"], drift)
            gone = [r["id"] for uri, r in stored.items() if uri not in fresh]
            for start in range(0, len(gone), _CHUNK):
                ids = gone[start : start + _CHUNK]
                table.delete_where(f"id IN ({', '.join('?' * len(ids))})", ids)
            if new:
                table.insert_all(new, batch_size=_CHUNK)
            db.table(REQUESTS).update(request, {"next_lookup": None, "lookup_failures": 0})
        return PlanDiff(new=len(new), changed=changed, unchanged=unchanged, removed=len(gone))

    def products(
        self, request: str, states: Collection[ProductState] | None = None
    ) -> list[ProductRow]:
        """The products of a request, optionally only those in ``states``, by obs_id, filename."""
        where, args = "request = ?", [request]
        if states is not None:
            if not states:
                return []
            where += f" AND state IN ({', '.join('?' * len(states))})"
            args += [str(s) for s in states]
        with self._reading(f"read the products of {request}") as db:
            rows = db.table(PRODUCTS).rows_where(where, args, order_by="obs_id, filename, data_uri")
            return [_product_row(r) for r in rows]

    def mark(
        self,
        request: str,
        data_uri: str,
        state: ProductState,
        *,
        bytes_done: int | None = None,
        error: str | None = None,
        attempts: int = 0,
        size: int | None = None,
        size_note: str | None = None,
    ) -> None:
        """Record a product's new state.

        ``error`` replaces the last error when given; None keeps it, except that a
        product marked done has none. ``attempts`` adds that many transfer attempts.
        A done product has ``bytes_done`` equal to its size and a ``done_at`` stamp;
        any other state clears ``done_at``. ``size`` (done only) is the size the server
        sent, which becomes the product's size, with ``size_note`` saying how it
        differs from the catalogue's (the catalogue's stays in ``catalogue_size``).
        """
        now = utc_now()
        with self._writing(f"record product {data_uri} of {request}") as db:
            table = db.table(PRODUCTS)
            row = first_row(table.rows_where("request = ? AND data_uri = ?", [request, data_uri]))
            if row is None:
                raise StoreError(f"no product {data_uri} in request {request!r} in {self.path}")
            changes: dict[str, Any] = {"state": str(state), "updated": now}
            if state is ProductState.DONE:
                if size is not None:
                    changes |= {"size": size, "size_note": size_note}
                done = size if size is not None else max(row["size"], 0)
                changes |= {"bytes_done": done, "last_error": None, "done_at": now}
            else:
                changes["done_at"] = None
                if bytes_done is not None:
                    changes["bytes_done"] = bytes_done
            if error is not None:
                changes["last_error"] = error
            if attempts:
                changes["attempts"] = row["attempts"] + attempts
            table.update(row["id"], changes)

    def record_progress(self, updates: Mapping[tuple[str, str], int]) -> None:
        """Byte counters of many transfers, ``(request, data_uri) -> bytes_done``, at once.

        Products that are gone or already done are left as they are.
        """
        if not updates:
            return
        now = utc_now()
        params = [(n, now, req, uri) for (req, uri), n in updates.items()]
        with self._writing("record transfer progress") as db:
            db.conn.executemany(
                "UPDATE products SET bytes_done = ?, updated = ?"
                " WHERE request = ? AND data_uri = ? AND state != 'done'",
                params,
            )

    # -- overview and recovery ---------------------------------------------------------

    def summaries(self, name: str | None = None) -> list[RequestSummary]:
        """Each request (or only ``name``) with its product counts and bytes."""
        where, args = ("WHERE request = ?", [name]) if name is not None else ("", [])
        # A few rows per request, kept by triggers (schema.TALLIES): O(requests). A
        # database an older daemon still holds (read-only here) has no tallies yet: one
        # pass over the (request, state, size, bytes_done) index instead.
        sql = (
            f"SELECT request, state, n, total, done FROM tallies {where}"
            if self.schema_version >= TALLIES_VERSION
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
        with self._reading("summarise requests") as db:
            if name is None:
                requests = self.list_requests()
            else:
                one = self.get_request(name)
                requests = [] if one is None else [one]
            for row in db.query(sql, args):
                tallies.setdefault(row["request"], {})[ProductState(row["state"])] = row["n"]
                sums = totals.setdefault(row["request"], [0, 0])
                sums[0] += row["total"]
                sums[1] += row["done"]
        return [
            RequestSummary(
                request=r,
                counts=_counts(tallies.get(r.name, {})),
                bytes_total=totals.get(r.name, [0, 0])[0],
                bytes_done=totals.get(r.name, [0, 0])[1],
            )
            for r in requests
        ]

    def recover_interrupted(self) -> tuple[int, int]:
        """After a stop mid-pass: transfers back to pending, busy requests back to queued.

        Returns (products, requests) reset.
        """
        now = utc_now()
        pending = str(ProductState.PENDING)
        with self._writing("recover interrupted work") as db:
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

    def retry(self, request: str | None = None) -> int:
        """Failed and auth_required products back to pending, their requests to queued.

        Invalid requests keep their state (their manifest must be fixed first).
        Returns how many products were put back.
        """
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
        with self._writing("put failed products back in the queue") as db:
            names = [
                r["request"]
                for r in db.table(PRODUCTS).rows_where(where, args, select="DISTINCT request")
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


# -- rows -> values ----------------------------------------------------------------------


def _request_row(row: Mapping[str, Any]) -> RequestRow:
    return RequestRow(
        name=str(row["name"]),
        proposal_ids=tuple(str(p) for p in json.loads(row["proposal_ids"])),
        digest=str(row["digest"]),
        manifest=str(row["manifest"]),
        state=RequestState(row["state"]),
        last_error=row["last_error"],
        created=str(row["created"]),
        updated=str(row["updated"]),
        resolved_at=row["resolved_at"],
        next_lookup=row["next_lookup"],
        lookup_failures=int(row["lookup_failures"] or 0),
        last_new_files=row.get("last_new_files"),
    )


def _product_row(row: Mapping[str, Any]) -> ProductRow:
    calib = row["calib_level"]
    return ProductRow(
        request=str(row["request"]),
        product=Product(
            data_uri=str(row["data_uri"]),
            obs_collection=str(row["obs_collection"]),
            obs_id=str(row["obs_id"]),
            filename=str(row["filename"]),
            size=None if row["size"] < 0 else int(row["size"]),
            obsid=str(row["obsid"]),
            product_type=str(row["product_type"]),
            calib_level=None if calib is None else int(calib),
            data_rights=str(row["data_rights"]),
            description=str(row["description"]),
            problem=row["problem"],
        ),
        state=ProductState(row["state"]),
        bytes_done=int(row["bytes_done"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        updated=str(row["updated"]),
        catalogue_size=row["catalogue_size"],
        size_note=row["size_note"],
    )


def _counts(tally: Mapping[ProductState, int]) -> Counts:
    # counts_of decides which count a state feeds (downloading is pending). Asking it
    # once per state and scaling keeps that rule in model.py without a per-row loop.
    names = [f.name for f in dataclasses.fields(Counts)]
    sums = dict.fromkeys(names, 0)
    for state, n in tally.items():
        unit = counts_of([state])
        for field_name in names:
            sums[field_name] += n * getattr(unit, field_name)
    return Counts(**sums)
