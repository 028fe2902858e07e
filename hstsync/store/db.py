"""The SQLite record of requests and products: the :class:`Store`, its one connection.

Owns the one connection per :class:`Store` (read-write, or read-only for ``status``)
and every transaction; each public method opens one and hands a write the sqlite-utils
``Database`` (a statement of ``request_queries.py`` or ``product_queries.py``) and a
read the plain connection (a statement of ``reads.py``). Those three, ``schema.py``
(tables, migrations, opening the file) and this module are the only ones that speak SQL
about rows. sqlite-utils (and numpy behind it) is imported only to write: a read-only
store, all ``hstsync status`` opens, never loads it. Callers see the frozen
dataclasses of ``rows.py``, never dicts; each method's docstring here is the contract.

Transactions: every public write runs in ``BEGIN IMMEDIATE`` … ``COMMIT`` and has
committed when it returns; reads run in one deferred transaction so they see a single
snapshot. The connection is in driver autocommit mode (``isolation_level=None``), so
sqlite-utils' own ``atomic()`` blocks nest inside ours as savepoints.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from hstsync.errors import StoreError
from hstsync.model import Product, ProductState, Request, RequestState
from hstsync.store import product_queries, reads, request_queries
from hstsync.store.rows import (
    Delisted,
    Facts,
    PlanDiff,
    ProductRow,
    RequestRow,
    RequestSummary,
)
from hstsync.store.schema import (
    configure,
    connect_readonly,
    connect_readwrite,
    migrate,
    open_failure,
    unreadable,
    user_version,
)

#: one product's new state for :meth:`Store.mark_many`: (request, data_uri, state,
#: the keywords of :meth:`Store.mark`)
ProductMark = tuple[str, str, ProductState, Mapping[str, Any]]


class Store:
    """One connection to the database file; see the module docstring for the rules."""

    path: Path
    readonly: bool
    _conn: sqlite3.Connection
    _db: Any  # sqlite_utils.Database (untyped); None when read-only

    def __init__(self, path: Path) -> None:
        """Open ``path`` for reading and writing, creating it and its schema if needed."""
        conn = connect_readwrite(path)
        try:
            self._setup(path, conn, readonly=False)
            self._db.enable_wal()
            with self._writing("create the schema") as db:
                migrate(db, path)
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
        if (problem := unreadable(path, version)) is not None:
            store.close()
            raise StoreError(problem)
        return store

    def _setup(self, path: Path, conn: sqlite3.Connection, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._conn = conn
        configure(conn, readonly=readonly)
        self._db = None
        if not readonly:
            from sqlite_utils import Database

            self._db = Database(conn, execute_plugins=False)

    def close(self) -> None:
        self._conn.close()

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
        with self._reading("read the schema version") as conn:
            return user_version(conn)

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
        conn = self._conn
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
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        with self._errors(what):
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    # -- requests ----------------------------------------------------------------------

    def upsert_request(self, request: Request, manifest: str) -> RequestRow:
        """Record a parsed manifest; a request whose digest changed is queued afresh."""
        with self._writing(f"record request {request.name}") as db:
            return request_queries.upsert(db, request, manifest)

    def record_invalid(self, name: str, manifest: str, reason: str) -> None:
        """A manifest that could not be parsed: the request is ``invalid`` with the reason.

        Its products, if an earlier version of the manifest listed any, are kept. The
        digest is emptied: it differs from every real one, so the next valid manifest
        of this name, even the same as before, is queued by :meth:`upsert_request`.
        """
        with self._writing(f"record invalid request {name}") as db:
            request_queries.record_invalid(db, name, manifest, reason)

    def set_request_state(
        self,
        name: str,
        state: RequestState,
        last_error: str | None = None,
        *,
        resolved: bool = False,
    ) -> None:
        """Set a request's state and last error; ``resolved`` also stamps ``resolved_at``."""
        with self._writing(f"set the state of request {name}") as db:
            request_queries.set_state(db, self.path, name, state, last_error, resolved=resolved)

    def lookup_failed(self, name: str, error: str) -> RequestRow:
        """A lookup of ``name`` failed: count it and schedule the next one.

        The next lookup comes :func:`~hstsync.model.relookup_delay` after now (2, 4, 8 …
        minutes, at most an hour), not after ``resync_every``. ``last_error`` says why.
        """
        with self._writing(f"record the failed lookup of {name}") as db:
            return request_queries.lookup_failed(db, self.path, name, error)

    def retry_lookups(self, request: str | None = None) -> int:
        """Failed lookups (of ``request``, or all) due at once; how many."""
        with self._writing("put failed lookups back in the queue") as db:
            return request_queries.retry_lookups(db, request)

    def note_new_files(self, name: str) -> None:
        """Stamp ``last_new_files``: a pass just brought new or changed files."""
        with self._writing(f"record new files of request {name}") as db:
            request_queries.note_new_files(db, name)

    def note_planned(self, name: str, planned: int) -> None:
        """A complete lookup of ``name`` found ``planned`` observations planned, not yet
        executed (``RequestRow.planned``)."""
        with self._writing(f"record the planned observations of request {name}") as db:
            request_queries.note_planned(db, self.path, name, planned)

    def note_error(self, name: str, error: str) -> None:
        """Say why a request is held up, its state unchanged (a lookup that retries)."""
        with self._writing(f"record the error of request {name}") as db:
            request_queries.note_error(db, self.path, name, error)

    def begin_pass(self, name: str) -> None:
        """Stamp the start of a pass of ``name`` (``pass_started``)."""
        with self._writing(f"record the pass of request {name}") as db:
            request_queries.begin_pass(db, self.path, name)

    def end_pass(self, name: str, *, new_files: int = 0, new_bytes: int = 0) -> RequestRow:
        """A pass of ``name`` has settled: stamp ``pass_ended``, and ``mirrored_at`` when
        it left the request ``done`` without an error; ``new_files`` (of ``new_bytes``)
        it brought stamp ``last_new_files`` and add to the fetched-files facts."""
        with self._writing(f"record the end of the pass of request {name}") as db:
            return request_queries.end_pass(db, self.path, name, new_files, new_bytes)

    def facts(self) -> Facts:
        with self._reading("read the store's facts") as conn:
            return reads.facts(conn)

    def set_facts(self, **values: str | int | None) -> None:
        """Write some of :class:`Facts`'s fields (by name)."""
        unknown = set(values) - {f for f in Facts.__dataclass_fields__}
        if unknown:
            raise ValueError(f"not facts: {', '.join(sorted(unknown))}")
        with self._writing("record the store's facts") as db:
            request_queries.set_facts(db, values)

    def get_request(self, name: str) -> RequestRow | None:
        with self._reading(f"read request {name}") as conn:
            return reads.get_request(conn, name)

    def list_requests(self) -> list[RequestRow]:
        with self._reading("list requests") as conn:
            return reads.all_requests(conn)

    def remove_request(self, name: str) -> None:
        """Forget a request and its products (files on disk are left to the caller)."""
        with self._writing(f"remove request {name}") as db:
            request_queries.remove(db, name)

    # -- products ----------------------------------------------------------------------

    def replace_products(self, request: str, products: Sequence[Product]) -> PlanDiff:
        """Make the stored product list of ``request`` the freshly resolved one.

        New products are pending; one whose catalogue size, data rights or problem
        changed starts over (pending, nothing done, no attempts, no error); the others
        keep their state, and the size a transfer recorded, and get the catalogue's
        current details; products no longer listed are withdrawn (a file was landed for
        them) or deleted. A ``data_uri`` listed
        twice is taken once (the first). A successful lookup: the request's failed
        lookups are forgotten.
        """
        with self._writing(f"record the products of {request}") as db:
            return product_queries.replace(db, self.path, request, products)

    def begin_resolution(self, request: str) -> int:
        """A new resolution of ``request``, recorded batch by batch: its stamp.

        ``replace_products`` in steps, for a list too big to hold: each batch goes
        to :meth:`record_batch` as it is resolved, and :meth:`end_resolution` deletes
        what none listed once the last is in. A resolution that fails half-way is not
        ended: products it did not reach keep their rows (:meth:`product_pages`,
        ``unseen_by``).
        """
        with self._writing(f"begin a resolution of {request}") as db:
            return product_queries.begin_resolution(db, self.path, request)

    def record_batch(
        self, request: str, products: Sequence[Product], stamp: int
    ) -> tuple[PlanDiff, list[ProductRow]]:
        """Record one batch of resolution ``stamp`` as :meth:`replace_products` records a
        list (nothing is removed); the diff and the batch's rows as now stored."""
        with self._writing(f"record products of {request}") as db:
            return product_queries.record_batch(db, self.path, request, products, stamp)

    def end_resolution(self, request: str, stamp: int) -> Delisted:
        """Resolution ``stamp`` is complete: the products it did not list are withdrawn
        (their files kept) or deleted (none landed), the request's failed lookups
        forgotten; what left the list."""
        with self._writing(f"end a resolution of {request}") as db:
            return product_queries.end_resolution(db, request, stamp)

    def product_pages(
        self, request: str, *, unseen_by: int | None = None, page: int = 1000
    ) -> Iterator[list[ProductRow]]:
        """The products of ``request`` in :meth:`products`' order, a page at a time (a
        read each): a list of any length without holding it. ``unseen_by``: only those
        that resolution did not list (what an earlier one listed, when it failed)."""
        after: tuple[str, str, str] | None = None
        while True:
            with self._reading(f"read the products of {request}") as conn:
                rows = reads.ordered_page(conn, request, after, page, unseen_by)
            if rows:
                yield rows
            if len(rows) < page:
                return
            last = rows[-1].product
            after = (last.obs_id, last.filename, last.data_uri)

    def first_failed(self, request: str) -> ProductRow | None:
        """The first failed product of ``request`` (in list order) that says why."""
        with self._reading(f"read the products of {request}") as conn:
            return reads.first_failed(conn, request)

    def products(
        self, request: str, states: Collection[ProductState] | None = None
    ) -> list[ProductRow]:
        """The products of a request, optionally only those in ``states``, by obs_id, filename."""
        with self._reading(f"read the products of {request}") as conn:
            return reads.products(conn, request, states)

    def record_content(
        self,
        request: str,
        data_uri: str,
        *,
        sha256: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        verified: bool = False,
    ) -> None:
        """What a verify learned of a product's file in place: its hash (a file landed
        before hashes were kept), the validators the archive sends for it now, and
        (``verified``, or with a hash) that it is the archive's as of now."""
        with self._writing(f"record what verify found of {data_uri}") as db:
            product_queries.record_content(
                db, request, data_uri, sha256, etag, last_modified, verified=verified
            )

    def finish_verify(self, request: str, verdicts: Mapping[str, int]) -> None:
        """A verify of ``request`` ended now, with these counts of its verdicts."""
        with self._writing(f"record the verify of {request}") as db:
            request_queries.finish_verify(db, request, verdicts)

    def due_for_verify(
        self, request: str, before: str, share: int, recent: str
    ) -> list[ProductRow]:
        """``request``'s files to verify now, oldest check first: those last checked
        (or landed) before ``before``, and at least ``share`` of the oldest, none of
        them checked (or landed) since ``recent``."""
        with self._reading(f"read what of {request} to verify") as conn:
            return reads.due_for_verify(conn, request, before, share, recent)

    def orphans(self) -> list[tuple[str, int]]:
        """Files mirrored for requests since removed that no request lists now:
        ``(relpath, size)``."""
        with self._reading("read the orphaned files") as conn:
            return reads.orphans(conn)

    def withdrawn(self, request: str | None = None) -> list[ProductRow]:
        """Products the archive (or their manifest) no longer lists, files kept."""
        with self._reading("read the withdrawn products") as conn:
            return reads.withdrawn(conn, request)

    def owned_elsewhere(self, relpath: str, request: str) -> bool:
        """Whether a request other than ``request`` lists a product at ``relpath``."""
        with self._reading(f"read who lists {relpath}") as conn:
            return reads.owned_elsewhere(conn, relpath, request)

    def forget(self, request: str, data_uri: str) -> None:
        """Delete one product row (a withdrawn one, once its file is pruned)."""
        with self._writing(f"forget {data_uri} of {request}") as db:
            db.table("products").delete_where("request = ? AND data_uri = ?", [request, data_uri])

    def forget_orphan(self, relpath: str) -> None:
        with self._writing(f"forget the orphan {relpath}") as db:
            db.table("orphans").delete_where("relpath = ?", [relpath])

    def sizes_sent(self, relpaths: Sequence[str]) -> dict[str, int]:
        """For files at these paths, the size a server sent where it differs from what a
        catalogue said (a done product of any request with a size note)."""
        with self._reading("read the sizes servers sent") as conn:
            return reads.sizes_sent(conn, relpaths)

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
        sha256: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Record a product's new state.

        ``error`` replaces the last error when given; None keeps it, except that a
        product marked done has none. ``attempts`` adds that many transfer attempts.
        A done product has ``bytes_done`` equal to its size and a ``done_at`` stamp;
        any other state clears ``done_at``. ``size`` (done only) is the size the server
        sent, which becomes the product's size, with ``size_note`` saying how it
        differs from the catalogue's (the catalogue's stays in ``catalogue_size``).
        ``sha256`` (done only) is the hash of the file landed, with ``etag`` and
        ``last_modified`` of the answer it came from; the file counts as verified now.
        """
        with self._writing(f"record product {data_uri} of {request}") as db:
            product_queries.mark(
                db,
                self.path,
                request,
                data_uri,
                state,
                bytes_done=bytes_done,
                error=error,
                attempts=attempts,
                size=size,
                size_note=size_note,
                sha256=sha256,
                etag=etag,
                last_modified=last_modified,
            )

    def mark_many(self, marks: Sequence[ProductMark]) -> int:
        """Record many products' new states in one transaction, in the order given.

        Each mark is ``(request, data_uri, state, fields)``, ``fields`` the keywords
        of :meth:`mark`, and means what :meth:`mark` would. A product that is gone (its
        request removed meanwhile) is skipped. Returns how many were recorded.
        """
        if not marks:
            return 0
        recorded = 0
        with self._writing(f"record {len(marks)} products") as db:
            for request, data_uri, state, fields in marks:
                try:
                    product_queries.mark(
                        db,
                        self.path,
                        request,
                        data_uri,
                        state,
                        bytes_done=fields.get("bytes_done"),
                        error=fields.get("error"),
                        attempts=fields.get("attempts", 0),
                        size=fields.get("size"),
                        size_note=fields.get("size_note"),
                        sha256=fields.get("sha256"),
                        etag=fields.get("etag"),
                        last_modified=fields.get("last_modified"),
                    )
                except StoreError:  # no such row: it changed nothing
                    continue
                recorded += 1
        return recorded

    def record_progress(self, updates: Mapping[tuple[str, str], int]) -> None:
        """Byte counters of many transfers, ``(request, data_uri) -> bytes_done``, at once.

        Products that are gone or already done are left as they are.
        """
        if not updates:
            return
        with self._writing("record transfer progress") as db:
            product_queries.record_progress(db, updates)

    # -- overview and recovery ---------------------------------------------------------

    def summaries(self, name: str | None = None) -> list[RequestSummary]:
        """Each request (or only ``name``) with its product counts and bytes."""
        with self._reading("summarise requests") as conn:
            return reads.summaries(conn, name)

    def recover_interrupted(self) -> tuple[int, int]:
        """After a stop mid-pass: transfers back to pending, busy requests back to queued.

        Returns (products, requests) reset.
        """
        with self._writing("recover interrupted work") as db:
            return product_queries.recover_interrupted(db)

    def retry(self, request: str | None = None) -> int:
        """Failed and auth_required products back to pending, their requests to queued.

        Invalid requests keep their state (their manifest must be fixed first).
        Returns how many products were put back.
        """
        with self._writing("put failed products back in the queue") as db:
            return product_queries.retry(db, request)
