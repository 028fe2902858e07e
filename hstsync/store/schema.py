"""The store's schema: tables, indexes, tally triggers, and the migrations between
versions (``PRAGMA user_version``; :data:`SCHEMA_VERSION` is the one this hstsync
writes, and a newer database is refused rather than misread).

Part of the store, and with the record and query modules the only code that speaks SQL;
nothing here imports them. Opening the file is :mod:`hstsync.store.opening`; the
:class:`~hstsync.store.db.Store` built on both is in ``db.py``; the row dataclasses and
column values in ``rows.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hstsync.errors import StoreError

#: ``PRAGMA user_version`` of the schema this module creates and reads: one more than
#: the number of steps in :data:`MIGRATIONS` (version 1 is the first schema).
SCHEMA_VERSION = 8

REQUESTS = "requests"
PRODUCTS = "products"
TALLIES = "tallies"
FACTS = "facts"
#: the schema version that has :data:`TALLIES`
TALLIES_VERSION = 3
#: the schema version that has :data:`FACTS` and the requests' pass times
PASSES_VERSION = 6


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

    ``status`` reads a few rows per request instead of aggregating every product (an
    aggregate costs 0.3 s over a million products); each product write pays one small
    upsert.
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
