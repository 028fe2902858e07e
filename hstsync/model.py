"""Values shared by every layer: requests, products, their states, and where files go.

Pure: no I/O. An astropy Row becomes a :class:`Product` in ``archive/rows.py`` and
goes no further; everything below works with these dataclasses.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from hstsync.errors import UnsafePathError

#: The top directory of astroquery's own layout, kept so either tool re-uses the other's tree.
MIRROR_TOP = "mastDownload"

#: How every time is written: in the database's rows (compared as text), the status
#: documents and messages. ISO-8601 UTC to the second, ``2026-12-06T14:35:41Z``.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class ProductState(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    AUTH_REQUIRED = "auth_required"
    #: the archive (or the manifest) no longer lists it; its file stays until ``prune``
    WITHDRAWN = "withdrawn"


class RequestState(StrEnum):
    QUEUED = "queued"
    RESOLVING = "resolving"
    DOWNLOADING = "downloading"
    DONE = "done"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Request:
    """A validated manifest: which proposals, which observations, which products.

    ``criteria`` are extra ``Observations.query_criteria`` keywords (``obs_collection``
    is ``collection``, apart); ``filters`` are ``Observations.filter_products``
    keywords, including ``mrp_only`` and ``extension``. ``collection`` is the
    manifest's ``[criteria] obs_collection``: ``"HST"`` unless it says ``"JWST"``;
    ``proposal_ids`` are as that collection's catalogue keeps them (JWST's five digits).
    """

    name: str
    proposal_ids: tuple[str, ...]
    criteria: Mapping[str, Any] = field(default_factory=dict)
    filters: Mapping[str, Any] = field(default_factory=dict)
    collection: str = "HST"

    def digest(self) -> str:
        """A stable fingerprint of what the request asks for (not of its name)."""
        asked: dict[str, Any] = {
            "proposal_ids": list(self.proposal_ids),
            "criteria": dict(self.criteria),
            "filters": dict(self.filters),
        }
        if self.collection != "HST":
            # left out for HST: the digests a store holds for HST requests stay equal
            asked["collection"] = self.collection
        body = json.dumps(asked, sort_keys=True, default=str)
        import hashlib  # here: loading OpenSSL costs `hstsync status` more than its query

        return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Product:
    """One file of the archive, as the catalogue describes it.

    ``size`` is the size in bytes we expect: the catalogue's, or None when it gives
    none (the file is fetched anyway and the server's size is recorded). ``problem``
    says why this one catalogue row can never be fetched (its size is not a number, it
    has no obs_id, another row owns its path, ...); such a product fails alone.
    ``data_rights`` is empty when the catalogue does not say: treated as public for
    fetching (a refusal then reads as ``auth_required``).
    """

    data_uri: str
    obs_collection: str
    obs_id: str
    filename: str
    size: int | None
    obsid: str = ""
    product_type: str = ""
    calib_level: int | None = None
    data_rights: str = "PUBLIC"
    description: str = ""
    problem: str | None = None
    #: the catalogue's product version (``prvversion``: JWST's pipeline version), "" when
    #: it gives none; a new one is a new version of the file
    prvversion: str = ""
    #: its key in the public bucket as MAST's path lookup gave it (JWST), asked for a
    #: transfer about to start; None: not asked, or the bucket does not hold it (HST's
    #: keys follow from the names: ``archive.cloud``)
    cloud_key: str | None = None

    @property
    def is_public(self) -> bool:
        # unknown rights (an empty cell) are tried as public; see the class docstring
        return self.data_rights.upper() in {"PUBLIC", ""}

    def relpath(self) -> PurePosixPath:
        """``mastDownload/<obs_collection>/<obs_id>/<productFilename>``, checked.

        Raises :class:`UnsafePathError` when catalogue data would escape the tree.
        """
        return _relpath(self.obs_collection, self.obs_id, self.filename)


# A pass asks for a product's path several times (recorded, planned, fetched, listed in
# the results), a batch at a time: pathlib and the checks cost ~9 % of a re-sync's CPU.
@functools.lru_cache(maxsize=8192)
def _relpath(obs_collection: str, obs_id: str, filename: str) -> PurePosixPath:
    parts = (
        safe_component(obs_collection, "obs_collection"),
        safe_component(obs_id, "obs_id"),
        safe_component(filename, "productFilename"),
    )
    return PurePosixPath(MIRROR_TOP, *parts)


def relpath_or_none(product: Product) -> PurePosixPath | None:
    """``product.relpath()``, or None for a catalogue row that is refused."""
    try:
        return product.relpath()
    except UnsafePathError:
        return None


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def safe_component(value: str, what: str) -> str:
    """Return ``value`` if it is a single, harmless path component.

    Catalogue strings are data, not paths: separators, ``..``, absolute paths,
    NUL and control characters are refused rather than "cleaned", so a hostile
    or broken row can never write outside the mirror.
    """
    if not value or value in {".", ".."}:
        raise UnsafePathError(f"{what} {value!r} is not a usable file name")
    if "/" in value or "\\" in value:
        raise UnsafePathError(f"{what} {value!r} contains a path separator")
    if _CONTROL.search(value):
        raise UnsafePathError(f"{what} {value!r} contains a control character")
    if len(value.encode("utf-8", "surrogateescape")) > 255:
        raise UnsafePathError(f"{what} is longer than a file name may be")
    return value


@dataclass(frozen=True, slots=True)
class Counts:
    """How a request's products stand. ``total`` counts the products the archive lists
    for it; ``withdrawn`` those it no longer lists (their files kept), apart."""

    total: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    auth_required: int = 0
    withdrawn: int = 0


def counts_of(states: Iterable[ProductState]) -> Counts:
    tally = dict.fromkeys(ProductState, 0)
    for state in states:
        tally[state] += 1
    withdrawn = tally[ProductState.WITHDRAWN]
    return Counts(
        total=sum(tally.values()) - withdrawn,
        done=tally[ProductState.DONE],
        failed=tally[ProductState.FAILED],
        # a transfer in flight is still something the user is waiting for
        pending=tally[ProductState.PENDING] + tally[ProductState.DOWNLOADING],
        auth_required=tally[ProductState.AUTH_REQUIRED],
        withdrawn=withdrawn,
    )


def settled_request_state(counts: Counts) -> RequestState:
    """The state a request ends a pass in, once no transfer is in flight."""
    if counts.failed or counts.auth_required or counts.pending:
        return RequestState.INCOMPLETE
    return RequestState.DONE


#: the first retry of a failed lookup, and the longest wait between two (seconds)
RELOOKUP_FIRST = 120.0
RELOOKUP_MAX = 3600.0


def relookup_delay(failures: int) -> float:
    """Seconds until a request whose lookup failed ``failures`` times in a row is looked
    up again: 2, 4, 8, 16, 32 minutes, then every hour."""
    return min(RELOOKUP_FIRST * 2.0 ** min(max(failures - 1, 0), 32), RELOOKUP_MAX)


def collection_label(collection: str, planned: int) -> str:
    """A request's collection as tables show it: ``JWST``, or ``JWST, 2 planned`` when
    observations are planned, not yet executed."""
    return f"{collection}, {planned} planned" if planned else collection


def human_bytes(n: int) -> str:
    """Decimal units, as the tutorial prints them (50.18 MB)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
