"""Manifests: the small TOML or JSON file a user drops to ask for an HST or JWST proposal.

This module owns the manifest file: which file names are manifests, how one file is
read (size-capped) and parsed into a :class:`Request` (the rules of what a manifest
may say are in :mod:`hstsync.archive.validate`), and how a :class:`Request` is written
back as TOML for ``hstsync add``.

Pure apart from reading the one file. Every failure is a :class:`ManifestError`
whose message names the file and the problem in words a person understands; the
daemon moves such a manifest aside with that message next to it and keeps running.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from pathlib import Path

from hstsync.archive.collection import HST
from hstsync.archive.validate import (
    INT_MAX,
    INT_MIN,
    MAX_MANIFEST_BYTES,
    PROPOSAL,
    Invalid,
    json_object,
    request_from_document,
    show,
)
from hstsync.errors import ManifestError
from hstsync.files import atomic_write, make_directories
from hstsync.model import Request
from hstsync.text import printable

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

_TOML_WHERE = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$")


def is_manifest_name(name: str) -> bool:
    """``NAME.toml`` or ``NAME.json``; dot-files and ``*.tmp`` are not manifests yet."""
    lower = name.lower()
    if name.startswith(".") or lower.endswith(".tmp"):
        return False
    return lower.endswith((".toml", ".json"))


def request_name(path: Path) -> str:
    """The request's name: the manifest's file name without its suffix."""
    return path.stem


def parse_manifest(path: Path, *, follow: bool = False) -> Request:
    """Read one manifest file (at most ``MAX_MANIFEST_BYTES + 1`` bytes) into a Request.

    Opened without blocking (a FIFO dropped in the directory must not hang the daemon)
    and without following a link (one to ``/dev/zero`` or to a file elsewhere) unless
    ``follow`` (a file a person named on the command line); only a regular file is read,
    anything else is refused with what it is.
    """
    label = printable(path.name)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ManifestError(f"{label}: refused: a symbolic link, not a file") from None
        raise ManifestError(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ManifestError(f"{label}: refused: not a regular file ({_kind(mode)})")
        data = _read_upto(fd, MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{label}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return parse_manifest_bytes(request_name(path), data, path.suffix)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


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
    label = printable(name + suffix)
    try:
        doc = _load(data, suffix.lower())
        return request_from_document(name, doc)
    except Invalid as exc:
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
    criteria = dict(request.criteria)
    if request.collection != HST:
        criteria = {"obs_collection": request.collection, **criteria}
    for title, table in (("criteria", criteria), ("filters", request.filters)):
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
    make_directories(directory, 0o775)  # a group may drop manifests; others never write
    try:
        atomic_write(target, text)
    except OSError as exc:
        raise ManifestError(f"{target}: cannot write ({exc.strerror})") from None
    return target


# -- reading -------------------------------------------------------------------------


def _load(data: bytes, kind: str) -> object:
    if kind not in (".toml", ".json"):
        raise Invalid("not a manifest (expected a .toml or .json file)")
    if len(data) > MAX_MANIFEST_BYTES:
        raise Invalid(f"larger than {MAX_MANIFEST_BYTES // 1024} KiB — not a manifest")
    if b"\x00" in data:
        raise Invalid("not UTF-8 text (binary file?)")
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError:
        raise Invalid("not UTF-8 text (binary file?)") from None
    if not text.strip():
        raise Invalid("empty manifest: proposal_id is required")
    if kind == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            where = _TOML_WHERE.search(message)
            if where is None:
                raise Invalid(f"not valid TOML: {message}") from None
            what = message[: where.start()]
            place = "at the end" if where.group(1) == "end of document" else where.group(1)
            raise Invalid(f"not valid TOML: {place}: {what}") from None
        except ValueError:  # int() refuses numbers of thousands of digits
            raise Invalid("not valid TOML: a number is far too long") from None
    try:
        return json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as exc:
        raise Invalid(f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # a duplicate key, or a number of thousands of digits
        raise Invalid(f"not valid JSON: {exc}") from None


# -- writing -------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _render_ids(ids: Iterable[str]) -> str:
    # a canonical id is written as the number users type; anything else stays a string
    items = [pid if PROPOSAL.fullmatch(pid) and pid[0] != "0" else _toml_string(pid) for pid in ids]
    return items[0] if len(items) == 1 else f"[{', '.join(items)}]"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if INT_MIN <= value <= INT_MAX else "nan"  # refused on parse
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"  # refused on parse
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return f"[{', '.join(_toml_value(item) for item in value)}]"
    raise ManifestError(f"cannot write {show(value)} into a manifest")


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
