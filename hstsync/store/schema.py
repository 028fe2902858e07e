"""The store's side of the SQLite file: schema, migrations, connections.

Part of the store, and with ``db.py``, ``request_queries.py`` and ``product_queries.py``
the only modules that speak SQL; nothing here imports them. Owns the database file
(created 0600, WAL, ``PRAGMA user_version`` as the schema version), the tables,
indexes and tally triggers, the migration to :data:`SCHEMA_VERSION`, opening a
connection read-write or read-only (``mode=ro`` URI) with clear messages when that
fails, and the per-connection pragmas. The :class:`~hstsync.store.db.Store` built on
it and its transactions are in ``db.py``; the row dataclasses and column values in
``rows.py``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hstsync.errors import DiskFullError, StoreError

#: ``PRAGMA user_version`` of the schema this module creates and reads: one more than
#: the number of steps in :data:`MIGRATIONS` (version 1 is the first schema).
SCHEMA_VERSION = 8
BUSY_TIMEOUT_SECONDS = 10.0

REQUESTS = "requests"
PRODUCTS = "products"
TALLIES = "tallies"
FACTS = "facts"
#: the schema version that has :data:`TALLIES`
TALLIES_VERSION = 3
#: the schema version that has :data:`FACTS` and the requests' pass times
PASSES_VERSION = 6


# -- connections -------------------------------------------------------------------------


def connect_readwrite(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot write the database {path}: permission denied")
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except OSError as exc:
        if disk_full(path):
            raise DiskFullError(full_message(path)) from exc
        raise StoreError(f"cannot create database {path}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise open_failure(path, exc) from exc


#: below this many free bytes the database's filesystem counts as full
_FULL_BELOW = 64 * 1024


def disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < _FULL_BELOW
    except OSError:
        return False


def full_message(path: Path) -> str:
    return f"cannot open the database {path}: the disk is full (no space left in {path.parent})"


def open_failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """The error for a database that cannot be opened for writing, explained.

    SQLite says "disk I/O error" when it cannot make its -wal or -shm file on a full
    disk; that is said plainly (and is not a configuration error).
    """
    if disk_full(path):
        return DiskFullError(full_message(path))
    return StoreError(write_failure(path, exc))


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, if there is none.

    An existing file keeps its mode: an operator may have opened it to a group on
    purpose (``hstsync status`` as another user). SQLite gives the -wal and -shm files
    the mode of the database file, so they are private too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask can only take bits away; make it exact
    finally:
        os.close(fd)


def connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(f"no database at {path} yet — run `hstsync run` first")
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the database {path}: permission denied")
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # Opening is lazy: read the schema now so a failure surfaces here, explained.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(_readonly_failure(path, exc)) from exc
    return conn


def configure(conn: sqlite3.Connection, *, readonly: bool) -> None:
    """Set the per-connection pragmas of a connection the store is about to use."""
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        # NORMAL is durable across application crashes in WAL mode; only a power
        # loss can drop the last commits, which a re-sync repairs.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")


def _readonly_failure(path: Path, exc: sqlite3.Error) -> str:
    message = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
        return f"{path} is not an hstsync database: {message}"
    shm = path.with_name(path.name + "-shm")
    if not shm.exists() and not os.access(path.parent, os.W_OK):
        # A WAL database is read through its -shm index; with the daemon stopped that
        # file is gone, and a reader must be able to create it next to the database.
        return (
            f"cannot open {path} read-only: SQLite needs to create {shm.name} in "
            f"{path.parent}, which this user may not write; run this as the daemon's "
            "user, or while the daemon is running"
        )
    if shm.exists() and not os.access(shm, os.R_OK):
        return f"cannot open {path} read-only: {shm} is not readable by this user"
    return f"cannot open {path} read-only: {message}"


def write_failure(path: Path, exc: sqlite3.Error) -> str:
    message = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
        return f"{path} is not an hstsync database: {message}"
    if not os.access(path.parent, os.W_OK):
        return (
            f"cannot write the database {path}: SQLite keeps its -wal and -shm files in "
            f"{path.parent}, which this user may not write"
        )
    return f"cannot open the database {path}: {message}"


def unreadable(path: Path, version: int) -> str | None:
    """Why a database at schema ``version`` cannot be read as it is, or None."""
    if version == 0:
        return f"{path} holds no hstsync data yet — run `hstsync run` first"
    if version > SCHEMA_VERSION:
        return too_new(path, version)
    return None


def too_new(path: Path, version: int) -> str:
    return (
        f"{path} has schema version {version}, newer than this hstsync knows "
        f"({SCHEMA_VERSION}); upgrade hstsync"
    )


# -- schema ------------------------------------------------------------------------------


def migrate(db: Any, path: Path) -> None:
    """Bring the database ``db`` (inside a write transaction) to :data:`SCHEMA_VERSION`."""
    version = user_version(db)
    if version > SCHEMA_VERSION:
        raise StoreError(too_new(path, version))
    if version == 0:
        _create_schema(db)
        version = 1
    for step in MIGRATIONS[version - 1 :]:
        step(db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def user_version(db: Any) -> int:
    """The schema version of the database ``db`` (0: nothing created yet)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _add_lookup_and_size_columns(db: Any) -> None:
    """Version 2: lookups retried on their own schedule; sizes the server corrected.

    ``requests.next_lookup`` (when a failed lookup is tried again) and
    ``lookup_failures`` (failed lookups in a row); ``products.catalogue_size`` (what
    the catalogue says, NULL when it gives none: ``size`` is the size we expect, the
    server's once a transfer is done, -1 while unknown), ``size_note`` (why the two
    differ) and ``problem`` (why the catalogue row cannot be fetched).
    """
    requests = db.table(REQUESTS)
    requests.add_column("next_lookup", str)
    requests.add_column("lookup_failures", int, not_null_default=0)
    products = db.table(PRODUCTS)
    products.add_column("catalogue_size", int)
    products.add_column("size_note", str)
    products.add_column("problem", str)
    db.execute("UPDATE products SET catalogue_size = size WHERE size >= 0")


def _create_schema(db: Any) -> None:
    db.table(REQUESTS).create(
        {
            "name": str,
            "proposal_ids": str,  # JSON list
            "digest": str,
            "manifest": str,
            "state": str,
            "last_error": str,
            "created": str,
            "updated": str,
            "resolved_at": str,
        },
        pk="name",
        not_null=["proposal_ids", "digest", "manifest", "state", "created", "updated"],
    )
    db.table(PRODUCTS).create(
        {
            "id": int,
            "request": str,
            "data_uri": str,
            "obs_collection": str,
            "obs_id": str,
            "filename": str,
            "relpath": str,  # NULL when catalogue data would escape the mirror
            "size": int,
            "obsid": str,
            "product_type": str,
            "calib_level": int,
            "data_rights": str,
            "description": str,
            "state": str,
            "bytes_done": int,
            "attempts": int,
            "last_error": str,
            "updated": str,
            "done_at": str,
        },
        pk="id",
        foreign_keys=[("request", REQUESTS, "name")],
        not_null=[
            "request",
            "data_uri",
            "obs_collection",
            "obs_id",
            "filename",
            "size",
            "obsid",
            "product_type",
            "data_rights",
            "description",
            "state",
            "bytes_done",
            "attempts",
            "updated",
        ],
    )
    products = db.table(PRODUCTS)
    products.create_index(["request", "data_uri"], "products_request_uri", unique=True)
    # (request, state) leads, so per-state lookups use it; size and bytes_done make it
    # cover the summary aggregate, which then never touches the table itself.
    products.create_index(["request", "state", "size", "bytes_done"], "products_request_state")


# What one product row adds to its request's tally (unknown sizes count as 0 bytes).
_ROW_TOTAL = "MAX(COALESCE({r}.size, 0), 0)"
_ROW_DONE = (
    "CASE WHEN {r}.state = 'done' THEN MAX(COALESCE({r}.size, 0), 0) "
    "ELSE MIN(MAX({r}.bytes_done, 0), MAX(COALESCE({r}.size, 0), 0)) END"
)


def _tally(sign: str, r: str) -> str:
    total, done = _ROW_TOTAL.format(r=r), _ROW_DONE.format(r=r)
    return (
        f"INSERT INTO {TALLIES} (request, state, n, total, done) "
        f"VALUES ({r}.request, {r}.state, {sign}1, {sign}({total}), {sign}({done})) "
        "ON CONFLICT (request, state) DO UPDATE SET n = n + excluded.n, "
        "total = total + excluded.total, done = done + excluded.done;"
    )


def _add_tallies(db: Any) -> None:
    """Version 3: per-request, per-state counts and bytes, kept by triggers.

    ``status`` reads a few rows per request instead of aggregating every product
    (0.3 s on a million products before); each product write pays one small upsert.
    """
    db.execute(
        f"""CREATE TABLE {TALLIES} (
            request TEXT NOT NULL, state TEXT NOT NULL,
            n INTEGER NOT NULL, total INTEGER NOT NULL, done INTEGER NOT NULL,
            PRIMARY KEY (request, state)) WITHOUT ROWID"""
    )
    db.execute(
        f"CREATE TRIGGER tally_insert AFTER INSERT ON {PRODUCTS} BEGIN {_tally('+', 'NEW')} END"
    )
    db.execute(
        f"CREATE TRIGGER tally_delete AFTER DELETE ON {PRODUCTS} BEGIN {_tally('-', 'OLD')} END"
    )
    db.execute(
        f"CREATE TRIGGER tally_update AFTER UPDATE OF request, state, size, bytes_done "
        f"ON {PRODUCTS} BEGIN {_tally('-', 'OLD')} {_tally('+', 'NEW')} END"
    )
    total, done = _ROW_TOTAL.format(r="p"), _ROW_DONE.format(r="p")
    db.execute(
        f"INSERT INTO {TALLIES} (request, state, n, total, done) "
        f"SELECT p.request, p.state, COUNT(*), SUM({total}), SUM({done}) "
        f"FROM {PRODUCTS} AS p GROUP BY p.request, p.state"
    )


def _add_last_new_files(db: Any) -> None:
    """Version 4: when a pass last brought new or changed files (``status``, hooks)."""
    db.table(REQUESTS).add_column("last_new_files", str)


def _add_resolution_stamps(db: Any) -> None:
    """Version 5: resolutions recorded batch by batch.

    ``requests.resolution`` counts a request's resolutions; ``products.seen`` is the
    one that last listed the product. A big program is recorded one batch of
    observations at a time, while its first batches are already being fetched; once the
    last batch is in, what this resolution did not list is what the archive no longer
    lists (``product_queries.end_resolution``), found without holding the list.
    """
    db.table(REQUESTS).add_column("resolution", int, not_null_default=0)
    db.table(PRODUCTS).add_column("seen", int, not_null_default=0)
    # the order lists and the results table are read in, a page at a time
    db.table(PRODUCTS).create_index(
        ["request", "obs_id", "filename", "data_uri"], "products_request_order"
    )


# -- version 6: pass times and the facts staleness is read from (issue #24) -------------


def _add_pass_times_and_facts(db: Any) -> None:
    """Version 6: what an operator alerts on when nothing is said.

    ``requests.pass_started`` and ``pass_ended`` (the last pass of each request; a start
    after the end is a pass running, or cut short) and ``mirrored_at`` (the end of the
    last pass that left every listed product in the mirror, its lookup answered); the
    table :data:`FACTS`, one value per key, for what belongs to no request: the files and
    bytes fetched since the database was made, and how the archive last judged the MAST
    token (the keys are the fields of ``rows.Facts``).
    """
    requests = db.table(REQUESTS)
    requests.add_column("pass_started", str)
    requests.add_column("pass_ended", str)
    requests.add_column("mirrored_at", str)
    # no type: a value stays what was written (a count, a time, a sentence)
    db.execute(f"CREATE TABLE {FACTS} (key TEXT PRIMARY KEY, value) WITHOUT ROWID")


# -- version 7: a mirror that stays the archive (issue #21) ----------------------------


ORPHANS = "orphans"
#: the schema version that has :data:`ORPHANS` (and withdrawn products, hashes)
ORPHANS_VERSION = 7


def _add_content_and_versions(db: Any) -> None:
    """Version 7: a mirror that stays the archive.

    Products: ``sha256`` of the file as landed (NULL for files landed before: each gets
    one at its next verify), ``etag`` and ``last_modified`` of the answer it came from
    (for a conditional request later), ``prvversion`` (the catalogue's product version),
    ``verified`` (when its file was last found to be the archive's), ``supersede`` (1:
    the file in the mirror is an older version, fetched again with the old one kept in
    the attic). Requests: ``last_verify`` and ``verify_summary`` (when the last verify
    of it ended, and its verdicts as JSON). ``orphans``: files that were mirrored for a
    request since removed, that no request owns.
    """
    products = db.table(PRODUCTS)
    for column in ("sha256", "etag", "last_modified", "prvversion", "verified"):
        products.add_column(column, str)
    products.add_column("supersede", int, not_null_default=0)
    requests = db.table(REQUESTS)
    requests.add_column("last_verify", str)
    requests.add_column("verify_summary", str)
    db.execute(
        f"CREATE TABLE {ORPHANS} (relpath TEXT PRIMARY KEY, size INTEGER NOT NULL, "
        "since TEXT NOT NULL) WITHOUT ROWID"
    )
    # files by where they live: a file shared by requests, an orphan claimed again
    products.create_index(["relpath", "state"], "products_relpath")


# -- version 8: JWST beside HST (issue #25) ---------------------------------------------


def _add_collection_and_planned(db: Any) -> None:
    """Version 8: each request's collection and its planned observations.

    ``requests.collection`` (``HST`` or ``JWST``: the manifest's ``[criteria]
    obs_collection``; every request before was HST) and ``requests.planned`` (how many
    of its observations the last complete lookup found planned, not yet executed:
    calib_level -1, no files yet; they are mirrored at a re-sync once executed).
    """
    requests = db.table(REQUESTS)
    requests.add_column("collection", str, not_null_default="HST")
    requests.add_column("planned", int, not_null_default=0)


#: Steps from version N to N + 1, in order; ``MIGRATIONS[0]`` takes version 1 to 2.
MIGRATIONS: tuple[Callable[[Any], None], ...] = (
    _add_lookup_and_size_columns,
    _add_tallies,
    _add_last_new_files,
    _add_resolution_stamps,
    _add_pass_times_and_facts,
    _add_content_and_versions,
    _add_collection_and_planned,
)
