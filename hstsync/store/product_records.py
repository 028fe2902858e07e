"""The store's products: a request's list as resolved (batch by batch), each product's
state as its transfer goes, byte counters, and putting work back in the queue.

Each method runs one transaction (:mod:`hstsync.store.connection`) of statements from
``product_queries`` (writes) or ``reads``; its docstring is the contract."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from hstsync.errors import StoreError
from hstsync.model import Product, ProductState
from hstsync.store import product_queries, reads
from hstsync.store.connection import Connection
from hstsync.store.rows import Delisted, PlanDiff, ProductRow

#: one product's new state for :meth:`ProductRecords.mark_many`: (request, data_uri,
#: state, the keywords of :meth:`ProductRecords.mark`)
ProductMark = tuple[str, str, ProductState, Mapping[str, Any]]


class ProductRecords(Connection):
    """What the :class:`~hstsync.store.db.Store` records of products."""

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
                    product_queries.mark(db, self.path, request, data_uri, state, **fields)
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
