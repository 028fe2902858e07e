"""Manifests: the small TOML or JSON file a user drops to ask for an HST proposal.

This module owns the manifest format: which file names are manifests, how one file
is read (size-capped), parsed, validated and normalised into a :class:`Request`, and
how a :class:`Request` is written back as TOML for ``hstsync add``.

Pure apart from reading the one file. Every failure is a :class:`ManifestError`
whose message names the file and the problem in words a person understands; the
daemon moves such a manifest aside with that message next to it and keeps running.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hstsync.errors import ManifestError
from hstsync.files import atomic_write
from hstsync.model import Request

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
_PROPOSAL = re.compile(r"[0-9]{1,10}")
_CRITERION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_WHERE = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$")
# TOML's own integer range; also keeps str(int) and json.dumps (the digest) working.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

Scalar = str | int | float


class _Invalid(Exception):
    """A reason without the file's name; parse_manifest_bytes adds it."""


def is_manifest_name(name: str) -> bool:
    """``NAME.toml`` or ``NAME.json``; dot-files and ``*.tmp`` are not manifests yet."""
    lower = name.lower()
    if name.startswith(".") or lower.endswith(".tmp"):
        return False
    return lower.endswith((".toml", ".json"))


def request_name(path: Path) -> str:
    """The request's name: the manifest's file name without its suffix."""
    return path.stem


def parse_manifest(path: Path) -> Request:
    """Read one manifest file (at most ``MAX_MANIFEST_BYTES + 1`` bytes) into a Request."""
    label = _printable(path.name)
    try:
        # O_NONBLOCK: opening a FIFO dropped in the directory must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ManifestError(f"{label}: not a regular file")
            data = _read_upto(fd, MAX_MANIFEST_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ManifestError(f"{label}: cannot read ({exc.strerror or exc})") from None
    return parse_manifest_bytes(request_name(path), data, path.suffix)


def _read_upto(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def parse_manifest_bytes(name: str, data: bytes, suffix: str) -> Request:
    """Parse and validate a manifest's bytes; ``suffix`` is ``".toml"`` or ``".json"``."""
    label = _printable(name + suffix)
    try:
        doc = _load(data, suffix.lower())
        return _request(name, doc)
    except _Invalid as exc:
        raise ManifestError(f"{label}: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{label}: nested too deeply to be a manifest") from None
    except MemoryError:
        raise ManifestError(f"{label}: too large to read — not a manifest") from None


def render_manifest(request: Request) -> str:
    """The TOML text of ``request``; parsing it gives back an equal Request.

    The text is checked by parsing it, so a request that would not make a valid
    manifest raises :class:`ManifestError` (with the parser's reason) instead of
    being written for the daemon to refuse later.
    """
    lines = [f"proposal_id = {_render_ids(request.proposal_ids)}"]
    for title, table in (("criteria", request.criteria), ("filters", request.filters)):
        if table:
            lines += ["", f"[{title}]"]
            lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items()]
    text = "\n".join(lines) + "\n"
    # surrogatepass: a lone surrogate becomes undecodable bytes, refused as such
    parse_manifest_bytes(request.name, text.encode("utf-8", "surrogatepass"), ".toml")
    return text


def write_manifest(directory: Path, request: Request, *, replace: bool = False) -> Path:
    """Write ``NAME.toml`` into the request directory atomically.

    The text goes to ``NAME.toml.tmp`` first (never a manifest, by the naming rule)
    and is renamed into place, so a watching daemon never reads half of it and takes
    it without waiting for it to settle. An existing manifest of that name is only
    replaced when ``replace`` is true.
    """
    text = render_manifest(request)
    target = directory / f"{request.name}.toml"
    if not replace and (target.exists() or target.with_suffix(".json").exists()):
        raise ManifestError(f"{target.name}: a request of that name exists already")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(target, text)
    except OSError as exc:
        raise ManifestError(f"{target}: cannot write ({exc.strerror})") from None
    return target


# -- reading -------------------------------------------------------------------------


def _load(data: bytes, kind: str) -> object:
    if kind not in (".toml", ".json"):
        raise _Invalid("not a manifest (expected a .toml or .json file)")
    if len(data) > MAX_MANIFEST_BYTES:
        raise _Invalid(f"larger than {MAX_MANIFEST_BYTES // 1024} KiB — not a manifest")
    if b"\x00" in data:
        raise _Invalid("not UTF-8 text (binary file?)")
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError:
        raise _Invalid("not UTF-8 text (binary file?)") from None
    if not text.strip():
        raise _Invalid("empty manifest: proposal_id is required")
    if kind == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            where = _TOML_WHERE.search(message)
            if where is None:
                raise _Invalid(f"not valid TOML: {message}") from None
            what = message[: where.start()]
            place = "at the end" if where.group(1) == "end of document" else where.group(1)
            raise _Invalid(f"not valid TOML: {place}: {what}") from None
        except ValueError:  # int() refuses numbers of thousands of digits
            raise _Invalid("not valid TOML: a number is far too long") from None
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise _Invalid(
            f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # a duplicate key, or a number of thousands of digits
        raise _Invalid(f"not valid JSON: {exc}") from None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # TOML refuses a repeated key; JSON would silently keep the last one.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {_show(key)} appears twice")
        result[key] = value
    return result


# -- validation ----------------------------------------------------------------------


def _request(name: str, doc: object) -> Request:
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS or name.startswith("."):
        raise _Invalid(
            f"{_show(name)} cannot be a request name: use at most {MAX_NAME_CHARS} "
            "letters, digits, '.', '_' or '-', not starting with '.'"
        )
    if not isinstance(doc, dict):
        raise _Invalid(f"expected an object {{...}} at the top, got {_show(doc)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise _Invalid(_unknown_top_key(key))
    if "proposal_id" not in doc:
        raise _Invalid(_missing_proposal(doc))
    return Request(
        name=name,
        proposal_ids=_proposal_ids(doc["proposal_id"]),
        criteria=_criteria(_table(doc, "criteria")),
        filters=_filters(_table(doc, "filters")),
    )


def _unknown_top_key(key: str) -> str:
    message = f"unknown key {_show(key)} (a manifest holds proposal_id, [criteria] and [filters])"
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
    return "proposal_id is required (the HST proposal to mirror, like proposal_id = 7291)"


def _proposal_ids(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        if not value:
            raise _Invalid("proposal_id is an empty list: name at least one proposal")
        items: list[object] = value
    else:
        items = [value]
    ids: dict[str, None] = {}  # ordered and deduplicated
    for item in items:
        pid = _proposal(item)
        if pid is None:
            raise _Invalid(
                f"proposal_id must be a number like 7291 or a list of them, got {_show(item)}"
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
    if not _PROPOSAL.fullmatch(text):
        return None
    # "07291" names proposal 7291; the archive compares the digits as text
    return text.lstrip("0") or None


def _table(doc: Mapping[str, object], title: str) -> Mapping[str, object]:
    value = doc.get(title, {})
    if not isinstance(value, dict):
        raise _Invalid(f"[{title}] must be a table of keys and values, got {_show(value)}")
    return value


def _criteria(table: Mapping[str, object]) -> dict[str, Any]:
    criteria: dict[str, Any] = {}
    for key, value in table.items():
        if not _CRITERION.fullmatch(key):
            raise _Invalid(f"[criteria] {_show(key)} is not a criterion name")
        where = f"[criteria] {key}"
        if key == "proposal_id":
            raise _Invalid(f"{where}: give proposal_id at the top of the manifest, not here")
        if key in POSITIONAL_CRITERIA:
            raise _Invalid(
                f"{where}: positional searches (coordinates, objectname, radius) are not "
                "supported — they would send the query to a name resolver; select by "
                "proposal_id and observation fields such as target_name instead"
            )
        if key in QUERY_OPTIONS:
            raise _Invalid(f"{where}: not a query criterion (hstsync sets this option itself)")
        checked = _values(value, where)
        if key == "obs_collection":
            if checked not in ("HST", ["HST"]):
                raise _Invalid(
                    f"{where}: hstsync mirrors Hubble data, obs_collection is always 'HST', "
                    f"got {_show(value)}"
                )
            continue  # implied: resolve.py passes obs_collection="HST" itself
        criteria[key] = checked
    return criteria


def _filters(table: Mapping[str, object]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[filters] {key}"
        if key == "mrp_only":
            if not isinstance(value, bool):
                raise _Invalid(f"{where}: expected true or false, got {_show(value)}")
            filters[key] = value
        elif key == "extension":
            filters[key] = _extensions(value, where)
        elif key in PRODUCT_COLUMNS:
            filters[key] = _values(value, where)
        else:
            raise _Invalid(_unknown_filter(key))
    return filters


def _unknown_filter(key: str) -> str:
    known = sorted(PRODUCT_COLUMNS | FILTER_OPTIONS, key=str.lower)
    by_lower = {name.lower(): name for name in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
    message = f"[filters] {_show(key)} is not a product column"
    if close:
        return f"{message}; did you mean {by_lower[close[0]]!r}?"
    return f"{message} (known: {', '.join(known)}; observation fields belong under [criteria])"


def _extensions(value: object, where: str) -> str | list[str]:
    items: list[object] = value if isinstance(value, list) else [value]
    if not items:
        raise _Invalid(f"{where}: an empty list matches nothing; remove the key or give one")
    checked: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item or not _is_text(item):
            raise _Invalid(
                f'{where}: expected a file extension like "fits" or a list of them, '
                f"got {_show(item)}"
            )
        checked.append(item)
    return checked if isinstance(value, list) else checked[0]


def _values(value: object, where: str) -> Scalar | list[Scalar]:
    if isinstance(value, list):
        if not value:
            raise _Invalid(f"{where}: an empty list matches nothing; remove the key or give values")
        return [_scalar(item, where) for item in value]
    return _scalar(value, where)


def _scalar(value: object, where: str) -> Scalar:
    if isinstance(value, str) and _is_text(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _Invalid(f"{where}: expected a string, a number or a list of them, got {_show(value)}")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")  # a JSON "\ud800" escape gives a lone surrogate
    except UnicodeEncodeError:
        return False
    return True


def _show(value: object) -> str:
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
        text = _printable(value)
        return repr(text) if len(text) <= 60 else repr(text[:57] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # TOML dates and times


def _printable(text: str) -> str:
    """Text that can be written anywhere: undecodable file-name bytes become escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# -- writing -------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _render_ids(ids: Iterable[str]) -> str:
    # a canonical id is written as the number users type; anything else stays a string
    items = [
        pid if _PROPOSAL.fullmatch(pid) and pid[0] != "0" else _toml_string(pid) for pid in ids
    ]
    return items[0] if len(items) == 1 else f"[{', '.join(items)}]"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if _INT_MIN <= value <= _INT_MAX else "nan"  # refused on parse
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"  # refused on parse
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return f"[{', '.join(_toml_value(item) for item in value)}]"
    raise ManifestError(f"cannot write {_show(value)} into a manifest")


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
