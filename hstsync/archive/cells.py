"""Catalogue cells: what one cell of the archive's answer holds, read as a value we trust.

The real archive sends ``size`` as an int, a float or a string, sometimes wrong, and
masked (null) cells anywhere; astroquery turns them into numpy values, masked arrays
and NaN. This module owns reading them: a null (:func:`missing`), a size
(:func:`parse_size`), a text cell (:func:`text_cell`), a whole table column by column
(:func:`table_rows`), and the sizes astroquery itself could not parse, taken out of a
portal answer before it reads it (:func:`unusable_sizes`). Building a Product from the
cells is :mod:`hstsync.archive.rows`'s. Pure; numpy is imported only when a value
comes from it (``status`` never loads it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hstsync.errors import CatalogueValueError

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


def cell(row: Any, column: str) -> Any:
    """The cell of ``column`` in ``row`` (an astropy Row or any mapping); None when the
    row has no such column or the cell is null (:func:`missing`)."""
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


def text_cell(row: Any, column: str, problems: list[str]) -> str:
    """A text cell, "" when missing. Text that cannot be stored as UTF-8 (a lone
    surrogate from a JSON escape) is kept escaped, and the row gets a problem."""
    value = cell(row, column)
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


def calib_level(row: Any) -> int | None:
    value = cell(row, "calib_level")
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
