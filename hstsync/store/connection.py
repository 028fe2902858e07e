"""The store's one connection to its SQLite file, and its transactions.

:class:`Connection` opens the file (read-write, creating it and its schema; or
read-only, for ``hstsync status``) and runs every transaction: each public write of
the :class:`~hstsync.store.db.Store` runs in ``BEGIN IMMEDIATE`` … ``COMMIT``
(:meth:`Connection._writing`, which hands it the sqlite-utils ``Database``) and has
committed when it returns; reads run in one deferred transaction so they see a single
snapshot (:meth:`Connection._reading`, the plain connection). The connection is in
driver autocommit mode (``isolation_level=None``), so sqlite-utils' own ``atomic()``
blocks nest inside ours as savepoints. sqlite-utils (and numpy behind it) is imported
only to write: a read-only store never loads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hstsync.errors import StoreError
from hstsync.store.opening import configure, connect_readonly, connect_readwrite, open_failure
from hstsync.store.schema import migrate, unreadable, user_version


class Connection:
    """One connection to the database file, and the transactions every method runs in."""

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
    def open_readonly(cls, path: Path) -> Self:
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

    def __enter__(self) -> Self:
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
