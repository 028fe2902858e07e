"""Validating a manifest's document: which keys, values and names a request may have.

Pure: a parsed TOML/JSON document in, a :class:`Request` out, or :class:`Invalid`
with a reason a person understands (the caller adds the file's name). The
constants here are the manifest's vocabulary: the top keys, ``query_criteria``
keys refused or treated as options, and the product columns ``filter_products``
knows.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from hstsync.archive.collection import COLLECTIONS, HST, canonical_id
from hstsync.model import Request
from hstsync.text import printable

#: A manifest is a few lines; anything bigger is not one, and is never parsed
#: (a parser fed megabytes of nesting exhausts memory before it fails).
MAX_MANIFEST_BYTES = 64 * 1024

#: Product fields usable as ``Observations.filter_products`` columns
#: (https://mast.stsci.edu/api/v0/_productsfields.html).
PRODUCT_COLUMNS: frozenset[str] = frozenset(
    {
        "obsID",
        "obs_collection",
        "dataproduct_type",
        "obs_id",
        "description",
        "type",
        "dataURI",
        "productType",
        "productGroupDescription",
        "productSubGroupDescription",
        "productDocumentationURL",
        "project",
        "prvversion",
        "proposal_id",
        "productFilename",
        "size",
        "parent_obsid",
        "dataRights",
        "calib_level",
        "filters",
    }
)

#: ``filter_products`` arguments that are not product columns.
FILTER_OPTIONS: frozenset[str] = frozenset({"mrp_only", "extension"})

TOP_KEYS = ("proposal_id", "criteria", "filters")

#: query_criteria keys that make astroquery send a name or position to a resolver
#: service instead of selecting by proposal: refused, a mirror selects by program.
POSITIONAL_CRITERIA = frozenset({"coordinates", "objectname", "radius"})

#: query_criteria keyword arguments that are options, not criteria.
QUERY_OPTIONS = frozenset({"pagesize", "page", "resolver"})

MAX_NAME_CHARS = 100
_NAME = re.compile(r"[A-Za-z0-9._-]+")
PROPOSAL = re.compile(r"[0-9]{1,10}")
_CRITERION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# TOML's own integer range; also keeps str(int) and json.dumps (the digest) working.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

Scalar = str | int | float


class Invalid(Exception):
    """A reason without the file's name; parse_manifest_bytes adds it."""


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # TOML refuses a repeated key; JSON would silently keep the last one.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {show(key)} appears twice")
        result[key] = value
    return result


def request_from_document(name: str, doc: object) -> Request:
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS or name.startswith("."):
        raise Invalid(
            f"{show(name)} cannot be a request name: use at most {MAX_NAME_CHARS} "
            "letters, digits, '.', '_' or '-', not starting with '.'"
        )
    if not isinstance(doc, dict):
        raise Invalid(f"expected an object {{...}} at the top, got {show(doc)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise Invalid(_unknown_top_key(key))
    if "proposal_id" not in doc:
        raise Invalid(_missing_proposal(doc))
    ids = _proposal_ids(doc["proposal_id"])
    criteria = _table(doc, "criteria")
    collection = _collection(criteria.get("obs_collection", HST))
    return Request(
        name=name,
        proposal_ids=tuple(dict.fromkeys(canonical_id(pid, collection) for pid in ids)),
        criteria=_criteria(criteria),
        filters=_filters(_table(doc, "filters")),
        collection=collection,
    )


def _collection(value: object) -> str:
    """``[criteria] obs_collection``: one of :data:`COLLECTIONS`, in any case."""
    where = "[criteria] obs_collection"
    checked = _values(value, where)
    items = checked if isinstance(checked, list) else [checked]
    names = {str(item).upper() for item in items}
    if len(names) > 1 and names <= set(COLLECTIONS):
        raise Invalid(
            f"{where}: one collection per manifest, got {show(value)}; write a manifest for each"
        )
    name = names.pop() if len(names) == 1 else ""
    if name not in COLLECTIONS:
        known = " or ".join(repr(c) for c in COLLECTIONS)
        raise Invalid(f"{where}: hstsync mirrors {known} programs, got {show(value)}")
    return name


def _unknown_top_key(key: str) -> str:
    message = f"unknown key {show(key)} (a manifest holds proposal_id, [criteria] and [filters])"
    close = difflib.get_close_matches(key, TOP_KEYS, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if key in PRODUCT_COLUMNS or key in FILTER_OPTIONS:
        return f"{message}; {key} belongs under [filters]"
    if _CRITERION.fullmatch(key):
        return f"{message}; if it is an observation field, put it under [criteria]"
    return message


def _missing_proposal(doc: Mapping[str, object]) -> str:
    if not doc:
        return "empty manifest: proposal_id is required"
    for title in ("criteria", "filters"):
        table = doc.get(title)
        if isinstance(table, dict) and "proposal_id" in table:
            # In TOML every key after a [table] header belongs to that table.
            return f"proposal_id must come first, before [{title}] (it is required at the top)"
    return "proposal_id is required (the proposal to mirror, like proposal_id = 7291)"


def _proposal_ids(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        if not value:
            raise Invalid("proposal_id is an empty list: name at least one proposal")
        items: list[object] = value
    else:
        items = [value]
    ids: dict[str, None] = {}  # ordered and deduplicated
    for item in items:
        pid = _proposal(item)
        if pid is None:
            raise Invalid(
                f"proposal_id must be a number like 7291 or a list of them, got {show(item)}"
            )
        ids[pid] = None
    return tuple(ids)


def _proposal(item: object) -> str | None:
    if isinstance(item, bool):  # true is an int to Python, never a proposal
        return None
    if isinstance(item, int):
        text = str(item) if 0 < item < 10**10 else ""
    elif isinstance(item, str):
        text = item.strip()
    else:
        return None
    if not PROPOSAL.fullmatch(text):
        return None
    # "07291" names proposal 7291; the archive compares the digits as text
    return text.lstrip("0") or None


def _table(doc: Mapping[str, object], title: str) -> Mapping[str, object]:
    value = doc.get(title, {})
    if not isinstance(value, dict):
        raise Invalid(f"[{title}] must be a table of keys and values, got {show(value)}")
    return value


def _criteria(table: Mapping[str, object]) -> dict[str, Any]:
    criteria: dict[str, Any] = {}
    for key, value in table.items():
        if not _CRITERION.fullmatch(key):
            raise Invalid(f"[criteria] {show(key)} is not a criterion name")
        where = f"[criteria] {key}"
        if key == "proposal_id":
            raise Invalid(f"{where}: give proposal_id at the top of the manifest, not here")
        if key in POSITIONAL_CRITERIA:
            raise Invalid(
                f"{where}: positional searches (coordinates, objectname, radius) are not "
                "supported — they would send the query to a name resolver; select by "
                "proposal_id and observation fields such as target_name instead"
            )
        if key in QUERY_OPTIONS:
            raise Invalid(f"{where}: not a query criterion (hstsync sets this option itself)")
        if key == "obs_collection":
            continue  # the request's collection (_collection): observations.py passes it itself
        criteria[key] = _values(value, where)
    return criteria


def _filters(table: Mapping[str, object]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[filters] {key}"
        if key == "mrp_only":
            if not isinstance(value, bool):
                raise Invalid(f"{where}: expected true or false, got {show(value)}")
            filters[key] = value
        elif key == "extension":
            filters[key] = _extensions(value, where)
        elif key in PRODUCT_COLUMNS:
            filters[key] = _values(value, where)
        else:
            raise Invalid(_unknown_filter(key))
    return filters


def _unknown_filter(key: str) -> str:
    known = sorted(PRODUCT_COLUMNS | FILTER_OPTIONS, key=str.lower)
    by_lower = {name.lower(): name for name in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
    message = f"[filters] {show(key)} is not a product column"
    if close:
        return f"{message}; did you mean {by_lower[close[0]]!r}?"
    return f"{message} (known: {', '.join(known)}; observation fields belong under [criteria])"


def _extensions(value: object, where: str) -> str | list[str]:
    items: list[object] = value if isinstance(value, list) else [value]
    if not items:
        raise Invalid(f"{where}: an empty list matches nothing; remove the key or give one")
    checked: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item or not _is_text(item):
            raise Invalid(
                f'{where}: expected a file extension like "fits" or a list of them, '
                f"got {show(item)}"
            )
        checked.append(item)
    return checked if isinstance(value, list) else checked[0]


def _values(value: object, where: str) -> Scalar | list[Scalar]:
    if isinstance(value, list):
        if not value:
            raise Invalid(f"{where}: an empty list matches nothing; remove the key or give values")
        return [_scalar(item, where) for item in value]
    return _scalar(value, where)


def _scalar(value: object, where: str) -> Scalar:
    if isinstance(value, str) and _is_text(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise Invalid(f"{where}: expected a string, a number or a list of them, got {show(value)}")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")  # a JSON "\ud800" escape gives a lone surrogate
    except UnicodeEncodeError:
        return False
    return True


def show(value: object) -> str:
    """A short description of a user's value, safe for any input (never a deep repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a number far too large"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = printable(value)
        return repr(text) if len(text) <= 60 else repr(text[:57] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # TOML dates and times
