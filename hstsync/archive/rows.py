"""Catalogue rows -> products: the one boundary where an astropy Row becomes a Product.

The real archive's rows repeat, carry masked (null) cells anywhere, and send ``size``
as an int, a float or a string, sometimes wrong. Everything here is pure: a row (an
astropy Row or any mapping) becomes a :class:`~hstsync.model.Product`, and whatever is
wrong with one row becomes that product's ``problem``, never an exception that loses
the whole request. :func:`products_from_rows` also collapses repeated dataURIs and
gives each destination path one owner (twins). No astroquery here: ``resolve`` asks the
archive and hands its table over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from hstsync.errors import CatalogueValueError
from hstsync.model import Product, relpath_or_none

log = logging.getLogger(__name__)

#: sizes at or above this do not fit SQLite's INTEGER (and no file is that large)
SIZE_LIMIT = 2**63
_DIGITS = re.compile(r"^\+?([0-9]+)(?:\.0*)?$")


def _from_numpy(value: Any) -> bool:
    # numpy is imported only when a value comes from it: `status` never loads it
    return type(value).__module__.partition(".")[0] == "numpy"


def missing(value: Any) -> bool:
    """A null cell: None, an astropy/numpy masked value (``str()`` of one is ``--``),
    an empty string, or NaN.

    NaN because astroquery fills a null of a float column with NaN and its mask test
    (``np.equal(data, nan)``) never matches: a float ``size`` column's nulls arrive
    as plain, unmasked NaN, indistinguishable from a NaN the archive might send.
    Unknown, then: fetched, and the server's size counts.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    if _from_numpy(value):
        import numpy as np

        if np.ma.is_masked(value):
            return True
        return isinstance(value, np.floating) and bool(np.isnan(value))
    return False


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds."""
    if _from_numpy(value) and hasattr(value, "item"):
        return value.item()
    return value


def _cell(row: Any, column: str) -> Any:
    names = getattr(row, "colnames", None)
    if names is None:
        names = row.keys()
    if column not in names:
        return None
    value = row[column]
    return None if missing(value) else value


def shown(value: Any, limit: int = 80) -> str:
    """A catalogue value quoted for a message: printable, ASCII-safe, bounded."""
    text = repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_size(value: Any) -> int | None:
    """The catalogue's ``size`` cell as bytes: any integral number; None when missing.

    Accepts ints (numpy's too), integral floats (``1234.0``) and integral strings
    (``"1234"``, ``" 1234 "``); NaN is a null (see :func:`missing`). Raises
    :class:`CatalogueValueError` for anything else: infinities, fractions, negative or
    absurdly large numbers, text that is not a number (``"nan"`` included), lists.
    """
    if missing(value):
        return None
    value = _plain(value)
    if isinstance(value, bytes):
        value = value.decode("ascii", "backslashreplace")
    number = _integral(value)
    if number < 0:
        raise CatalogueValueError(f"the catalogue's size for this file is negative: {number}")
    if number >= SIZE_LIMIT:
        raise CatalogueValueError(f"the catalogue's size for this file is too large: {number}")
    return number


#: the numeric types the portal may declare a column with (its ``fields`` list)
_NUMERIC = frozenset({"int", "long", "short", "float", "double", "real", "decimal"})


def unusable_sizes(response: Any) -> dict[str, str]:
    """Take ``size`` cells astroquery cannot parse out of a portal answer, in place.

    astroquery turns each column into the type the portal declares for it: one size of
    2**63 or more, or a list, in a numeric column makes that whole page unreadable
    (OverflowError, TypeError), and so the whole request. Such a cell is set to null
    before astroquery reads the answer, and the reason returned by dataURI so that
    only that product fails (``Product.problem``); a size given as text that is a
    whole number (``"11520"``) is written as that number. Anything that is not a portal
    answer with rows is left alone. ``response`` is a requests ``Response``.
    """
    try:
        doc = response.json()
        fields = {f["name"]: str(f.get("type", "")).lower() for f in doc["fields"]}
        rows = doc["data"]
    except Exception:  # not JSON, or not a table: astroquery says what it makes of it
        return {}
    if fields.get("size") not in _NUMERIC or not isinstance(rows, list):
        return {}
    found: dict[str, str] = {}
    changed = False
    for row in rows:
        if not isinstance(row, dict):
            continue
        value = row.get("size")
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if value is None or (numeric and (value != value or -SIZE_LIMIT <= value < SIZE_LIMIT)):
            continue  # parsed as it is (NaN: astroquery's own null for a float column)
        changed = True
        try:
            row["size"] = parse_size(value)  # "11520", 1234.0 as text: the number itself
        except CatalogueValueError as exc:
            row["size"] = None
            found[str(row.get("dataURI"))] = str(exc)
    if changed:
        response._content = json.dumps(doc).encode("utf-8")
    return found


def _integral(value: Any) -> int:
    what = "the catalogue's size for this file"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            raise CatalogueValueError(f"{what} is not a whole number: {shown(value)}")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        match = _DIGITS.match(text.removeprefix("-"))
        if match is not None:
            number = int(match.group(1))
            return -number if text.startswith("-") else number
    raise CatalogueValueError(f"{what} is not a number: {shown(value)}")


def _text(row: Any, column: str, problems: list[str]) -> str:
    """A text cell, "" when missing. Text that cannot be stored as UTF-8 (a lone
    surrogate from a JSON escape) is kept escaped, and the row gets a problem."""
    value = _cell(row, column)
    if value is None:
        return ""
    value = _plain(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # an id sent as a float (obsID 2003738726.0)
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        problems.append(f"the catalogue's {column} is not valid text: {shown(text)}")
    return text


def _calib_level(row: Any) -> int | None:
    value = _cell(row, "calib_level")
    try:
        level = parse_size(value)
    except CatalogueValueError:
        return None
    return level


#: the catalogue's text columns a Product is made of
TEXT_COLUMNS = (
    "dataURI",
    "obs_collection",
    "obs_id",
    "productFilename",
    "obsID",
    "productType",
    "dataRights",
    "description",
)
#: every catalogue column a Product is made of
COLUMNS = (*TEXT_COLUMNS, "size", "calib_level")


def table_rows(table: Any) -> list[dict[str, Any]]:
    """An astropy table's rows as plain dicts of the :data:`COLUMNS` it has, masked
    cells as None, numpy values as Python's.

    Column by column (``tolist``): reading an astropy ``Row`` cell by cell costs ~10 µs
    a cell through numpy's masked arrays, a quarter of a re-sync's CPU.
    """
    import numpy as np

    columns: dict[str, list[Any]] = {}
    for name in COLUMNS:
        if name not in table.colnames:
            continue
        column = table[name]
        values = np.ma.getdata(column).tolist()
        mask = np.ma.getmaskarray(column)
        if mask.any():
            values = [
                None if hidden else v for v, hidden in zip(values, mask.tolist(), strict=True)
            ]
        columns[name] = values
    if not columns:
        return [{} for _ in range(len(table))]
    names = list(columns)
    return [dict(zip(names, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]


#: the columns a file's path is made of: a missing cell is the product's problem
_REQUIRED = ("obs_collection", "obs_id", "productFilename")


def product_from_row(row: Any) -> Product:
    """One row of a products table → :class:`Product`; never raises.

    Whatever makes this one row unusable is the product's ``problem``: a size that is
    not a whole number of bytes, a missing obs_id or file name, text that is not valid
    Unicode. A missing size is not a problem (None: fetched, the server's size counts);
    a missing ``dataRights`` is "" (unknown, fetched as public). A masked cell never
    becomes the text ``--`` or ``None``.
    """
    problems: list[str] = []
    texts = {column: _text(row, column, problems) for column in TEXT_COLUMNS}
    if not texts["dataURI"].isprintable():
        # it is sent as a query parameter and shown in tables and logs: refused
        problems.append(
            f"refused: the catalogue's dataURI holds control characters: {shown(texts['dataURI'])}"
        )
    for column in _REQUIRED:
        if not texts[column]:
            problems.insert(0, f"the catalogue gives no {column} for this file")
    try:
        size = parse_size(_cell(row, "size"))
    except CatalogueValueError as exc:
        size = None
        problems.insert(0, str(exc))
    return Product(
        data_uri=texts["dataURI"],
        obs_collection=texts["obs_collection"],
        obs_id=texts["obs_id"],
        filename=texts["productFilename"],
        size=size,
        obsid=texts["obsID"],
        product_type=texts["productType"],
        calib_level=_calib_level(row),
        data_rights=texts["dataRights"],
        description=texts["description"],
        problem=problems[0] if problems else None,
        # where the archive fills it (JWST): a new one is a new version of the file
        prvversion=_text(row, "prvversion", []),
    )


class Seen:
    """A set of texts that keeps 16 bytes for each: a keyed 120-bit digest (which never
    collides by chance; the key is new for every set), in a sorted numpy array.

    A Python set of 100,000 strings takes ~15 MB, of digests ~9 MB; this ~1.6 MB.
    The newest digests wait in a small set and join the array in runs.
    """

    RUN = 4096

    def __init__(self) -> None:
        import numpy as np

        self._key = os.urandom(16)
        # "S16" drops trailing NUL bytes: every digest ends in 0x01 (see _digest)
        self._sorted = np.empty(0, dtype="S16")
        self._recent: set[bytes] = set()

    def _digest(self, text: str) -> bytes:
        data = text.encode("utf-8", "surrogateescape")
        return hashlib.blake2b(data, digest_size=15, key=self._key).digest() + b"\x01"

    def __contains__(self, text: str) -> bool:
        return self._holds(self._digest(text))

    def _holds(self, digest: bytes) -> bool:
        if digest in self._recent:
            return True
        index = int(self._sorted.searchsorted(digest))
        return index < len(self._sorted) and bytes(self._sorted[index]) == digest

    def add(self, text: str) -> bool:
        """Hold ``text``; True when it was not held before (one digest, one lookup)."""
        digest = self._digest(text)
        if self._holds(digest):
            return False
        self._recent.add(digest)
        if len(self._recent) >= self.RUN:
            import numpy as np

            run = np.array(sorted(self._recent), dtype="S16")
            self._sorted = np.union1d(self._sorted, run)
            self._recent.clear()
        return True

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)


@dataclass
class Claims:
    """What the batches of one resolution have already given out: dataURIs and paths.

    A big program is resolved in batches of observations (``paging.OBSID_BATCH``), and
    a product can be listed again in a later batch (HAP and association products belong
    to many observations). Each batch's products are passed on (recorded, planned,
    fetched) before the next batch is asked for, so the list as a whole is never held:
    only a digest of each dataURI and path (:class:`Seen`, 16 bytes each).
    """

    _uris: Seen = field(default_factory=Seen)
    #: dataURIs given out with a problem: a later row of the same dataURI may be usable
    _flawed: set[str] = field(default_factory=set)
    _paths: Seen = field(default_factory=Seen)

    def take(self, products: list[Product]) -> list[Product]:
        """``products`` (one batch, repeats already collapsed) less what earlier
        batches gave out; a path an earlier batch owns makes a later claimant fail."""
        fresh: list[Product] = []
        for product in products:
            uri = product.data_uri
            if not self._uris.add(uri):
                if uri not in self._flawed or product.problem is not None:
                    continue  # a repeat: the first usable row stands
                self._flawed.discard(uri)  # a usable row for a product first listed flawed
            if product.problem is not None:
                self._flawed.add(uri)
            elif (path := relpath_or_none(product)) is not None and not self._paths.add(str(path)):
                product = replace(
                    product,
                    problem=f"another product listed earlier has the same path {path}; "
                    "only that one is fetched",
                )
            fresh.append(product)
        return fresh


def products_from_rows(rows: Iterable[Any], claims: Claims | None = None) -> list[Product]:
    """Catalogue rows → products: one per dataURI, one owner per path. Pure.

    Repeats (the same dataURI listed again, as HAP and association rows do) collapse
    to the first usable row, the one astroquery itself would keep. Rows without a
    dataURI cannot be named or fetched and are left out (logged). Twins, rows with
    different dataURIs that would land on the same path, get one owner (see
    :func:`_claim_paths`); the others fail with a reason and are never written.
    An astropy table is read column by column (:func:`table_rows`).
    With ``claims``, the rows are one batch of a bigger list: what earlier batches
    gave out is left out or, for a path, kept by its first owner (:class:`Claims`).
    """
    if hasattr(rows, "colnames"):  # an astropy table: read column by column
        rows = table_rows(rows)
    chosen: dict[str, Product] = {}
    nameless = 0
    for row in rows:
        product = product_from_row(row)
        if not product.data_uri:
            nameless += 1
            continue
        held = chosen.get(product.data_uri)
        if held is None or (held.problem is not None and product.problem is None):
            chosen[product.data_uri] = product
    if nameless:
        log.warning("%d catalogue rows have no dataURI and are left out", nameless)
    claimed = _claim_paths(list(chosen.values()))
    return claimed if claims is None else claims.take(claimed)


def _claim_paths(products: list[Product]) -> list[Product]:
    """One product per destination path; the others get a ``problem``.

    The owner is the product whose dataURI is the archive's own for its file
    (``mast:<obs_collection>/product/<productFilename>``), then one whose dataURI ends
    in ``/<productFilename>``, then the first by dataURI: the same one every pass, so a
    path's content never swaps between two files, and a made-up row whose dataURI
    merely ends in another product's file name never takes that product's path.
    """
    by_path: dict[PurePosixPath, list[Product]] = {}
    for product in products:
        if product.problem is None and (path := relpath_or_none(product)) is not None:
            by_path.setdefault(path, []).append(product)
    losers: dict[str, Product] = {}
    for path, claimants in by_path.items():
        if len(claimants) < 2:
            continue
        owner = min(claimants, key=_ownership)
        for other in claimants:
            if other is not owner:
                losers[other.data_uri] = replace(
                    other,
                    problem=f"another product ({owner.data_uri}) has the same path {path}; "
                    "only that one is fetched",
                )
    return [losers.get(p.data_uri, p) for p in products]


def _ownership(product: Product) -> tuple[int, str]:
    """How well a dataURI names its product's own file (lower first; see _claim_paths)."""
    uri = product.data_uri
    if uri == f"mast:{product.obs_collection}/product/{product.filename}":
        return 0, uri
    return (1 if uri.endswith("/" + product.filename) else 2), uri
