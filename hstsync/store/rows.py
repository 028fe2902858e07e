"""What a row of the store is, as callers see it, and its columns as SQLite holds them.

Owns the frozen dataclasses the :class:`~hstsync.store.db.Store` hands out
(:class:`RequestRow`, :class:`ProductRow`, :class:`RequestSummary`, :class:`PlanDiff`)
and the pure conversions between them and column dicts: a stored row into a dataclass,
a :class:`~hstsync.model.Product` into the catalogue's columns, per-state tallies into
:class:`~hstsync.model.Counts`, and the timestamp format of every row. No SQL and no
connection here: the statements are in ``request_queries.py`` and ``product_queries.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hstsync.errors import UnsafePathError
from hstsync.model import (
    TIME_FORMAT,
    Counts,
    Product,
    ProductState,
    RequestState,
    counts_of,
)


def utc_now() -> str:
    """The timestamp format of every row: ISO-8601 UTC to the second, ``…Z``."""
    return _stamp(int(time.time()))


# formatted once a second, not once a row: every file of a pass stamps a row or two
@functools.lru_cache(maxsize=1)
def _stamp(second: int) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(second))


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
    #: when its last verify ended, and how many files it found same, changed, …
    last_verify: str | None = None
    verify_summary: Mapping[str, int] | None = None
    #: when the request's last pass started and ended (schema 6): a start after the
    #: end is a pass under way, or one cut short
    pass_started: str | None = None
    pass_ended: str | None = None
    #: the end of the last pass that left every product it lists in the mirror, its
    #: lookup answered (schema 6): when the request was last fully mirrored
    mirrored_at: str | None = None
    #: ``HST`` or ``JWST`` (schema 8)
    collection: str = "HST"
    #: observations its last complete lookup found planned, not yet executed (schema 8)
    planned: int = 0


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
    #: where the product goes under the mirror, as recorded (None: refused)
    relpath: str | None = None
    #: the SHA-256 of its file as landed or last verified (None: not known yet)
    sha256: str | None = None
    #: the ETag and Last-Modified of the answer its file came from
    etag: str | None = None
    last_modified: str | None = None
    #: when its file was last found to be the archive's (ISO UTC)
    verified: str | None = None
    #: the file in the mirror is an older version: fetched again, the old one kept
    supersede: bool = False


@dataclass(frozen=True, slots=True)
class RequestSummary:
    request: RequestRow
    counts: Counts
    bytes_total: int
    bytes_done: int


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store knows that belongs to no one request (schema 6; all empty before).

    The key of each in the ``facts`` table is the field's name.
    """

    #: files that passes brought (new or changed), and their bytes, since the database
    #: was made: they only grow (Prometheus counters)
    fetched_files: int = 0
    fetched_bytes: int = 0
    #: how the archive last judged the MAST token: "none" (there is none), "accepted",
    #: "expiring" (within a week), "expired", "refused", "unknown" (it could not be
    #: asked); None: never checked
    token_state: str | None = None
    #: when the archive says the token expires (ISO UTC), where it says so
    token_expires: str | None = None
    #: when it was checked (ISO UTC), and what a person should know, in words
    token_checked: str | None = None
    token_message: str | None = None
    #: the last token event told through the hook ("STATE EXPIRES"), so it is told once
    token_told: str | None = None


def facts_of(values: Mapping[str, Any]) -> Facts:
    """The :class:`Facts` of the ``facts`` table's rows (unknown keys left out)."""
    names = {f.name for f in dataclasses.fields(Facts)}
    return Facts(**{key: value for key, value in values.items() if key in names})


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """How a freshly resolved product list differs from the stored one."""

    new: int
    changed: int
    unchanged: int
    removed: int


@dataclass(frozen=True, slots=True)
class Delisted:
    """What a complete resolution found no longer listed: rows deleted (nothing of them
    was landed) and products withdrawn now (``(data_uri, relpath)``: their files kept)."""

    removed: int
    withdrawn: list[tuple[str, str | None]]


# -- rows -> values ----------------------------------------------------------------------


def first_row(rows: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    return next(iter(rows), None)


def request_row(row: Mapping[str, Any]) -> RequestRow:
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
        last_verify=row.get("last_verify"),
        verify_summary=json.loads(row["verify_summary"]) if row.get("verify_summary") else None,
        pass_started=row.get("pass_started"),
        pass_ended=row.get("pass_ended"),
        mirrored_at=row.get("mirrored_at"),
        collection=str(row.get("collection") or "HST"),
        planned=int(row.get("planned") or 0),
    )


def product_row(row: Mapping[str, Any]) -> ProductRow:
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
            prvversion=row.get("prvversion") or "",
        ),
        state=ProductState(row["state"]),
        bytes_done=int(row["bytes_done"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        updated=str(row["updated"]),
        catalogue_size=row["catalogue_size"],
        size_note=row["size_note"],
        relpath=row.get("relpath"),
        sha256=row.get("sha256"),
        etag=row.get("etag"),
        last_modified=row.get("last_modified"),
        verified=row.get("verified"),
        supersede=bool(row.get("supersede")),
    )


def counts(tally: Mapping[ProductState, int]) -> Counts:
    """The :class:`Counts` of a request from its products counted per state."""
    # counts_of decides which count a state feeds (downloading is pending). Asking it
    # once per state and scaling keeps that rule in model.py without a per-row loop.
    names = [f.name for f in dataclasses.fields(Counts)]
    sums = dict.fromkeys(names, 0)
    for state, n in tally.items():
        unit = counts_of([state])
        for field_name in names:
            sums[field_name] += n * getattr(unit, field_name)
    return Counts(**sums)


# -- values -> columns -------------------------------------------------------------------


def catalogue_columns(product: Product) -> dict[str, Any]:
    try:
        relpath: str | None = str(product.relpath())
    except UnsafePathError:
        relpath = None
    return {
        "data_uri": product.data_uri,
        "obs_collection": product.obs_collection,
        "obs_id": product.obs_id,
        "filename": product.filename,
        "relpath": relpath,
        # -1: unknown until a transfer brings the file (the column is NOT NULL)
        "size": -1 if product.size is None else product.size,
        "catalogue_size": product.size,
        "obsid": product.obsid,
        "product_type": product.product_type,
        "calib_level": product.calib_level,
        "data_rights": product.data_rights,
        "description": product.description,
        "problem": product.problem,
        "prvversion": product.prvversion or None,
    }
