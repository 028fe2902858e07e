"""The control file beside a ``.part``: what the part holds and where its bytes came from.

One small JSON file, ``FILE.part.ctl``, versioned, a person can read::

    {"format": 2, "size": 40960000, "validator": "\\"5f2c…\\"", "done": [[0, 8388608]]}

``size`` is the file's length as the server stated it (null: not stated yet),
``validator`` the strong ETag or Last-Modified of the answers the bytes came from (sent
back as ``If-Range``, so a file that changed on the server is fetched anew, never
spliced), ``done`` the byte ranges of the part that hold the file's bytes. The rule
that keeps a crash from making a file look complete: **only the ranges the control file
names are trusted**, and it names a range only after the part's bytes are fsynced; a
part without a control file is of unknown origin and is fetched again from zero.

Why a file beside the part and not the database: it lives and dies with the part it
describes. It is replaced atomically (temporary file, fsync, rename), removed once the
part is whole or gone, and a part copied, moved or cleaned up by hand takes it along or
leaves an orphan that is plainly stale, never a database row about bytes no longer there.

Earlier versions kept two sidecars: ``FILE.part.meta`` (the validator of a part written
in one stream, whose bytes were its length's prefix) and ``FILE.part.segments`` (format
1 of this file, for parts written in ranges). :func:`read_control` reads them once, for
parts those versions left; the next write replaces them with a control file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from hstsync.transfer.disk import fsync_dir, open_regular, pwrite_all
from hstsync.transfer.ranges import Range, covered, merge

FORMAT = 2
SUFFIX = ".ctl"
#: the sidecars of earlier versions: read once, then replaced by the control file
LEGACY_META = ".meta"
LEGACY_SEGMENTS = ".segments"
#: a control file is a few hundred bytes; anything larger is not one we wrote
MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Control:
    """What a part holds: ``done`` ranges of a file of ``size`` bytes (None: unknown)."""

    size: int | None
    validator: str | None
    done: tuple[Range, ...] = ()
    #: read from an earlier version's sidecar (removed once a control file replaces it)
    legacy: bool = False

    @property
    def held(self) -> int:
        return covered(self.done)

    @property
    def end(self) -> int:
        """The highest byte offset the part must reach for ``done`` to be there."""
        return max((end for _, end in self.done), default=0)


def render(control: Control) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "size": control.size,
            "validator": control.validator,
            "done": [list(r) for r in merge(control.done)],
        },
        separators=(",", ":"),
    )


def parse(text: str | bytes, *, format: int = FORMAT) -> Control | None:
    """The control file's content, or None for anything that is not one we wrote (then the
    part is not trusted: it is fetched again from zero). ``format`` 1 is the segment
    record of earlier versions, the same keys with a size always stated."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != format:
        return None
    size, validator, done = doc.get("size"), doc.get("validator"), doc.get("done")
    if size is not None and not _count(size):
        return None
    if format == 1 and size is None:
        return None
    if validator is not None and not isinstance(validator, str):
        return None
    if not isinstance(done, list):
        return None
    ranges: list[Range] = []
    for item in done:
        if not (isinstance(item, list) and len(item) == 2 and all(_count(x) for x in item)):
            return None
        start, end = item
        if not start < end or (size is not None and end > size):
            return None
        ranges.append((start, end))
    return Control(size, validator or None, tuple(merge(ranges)))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sidecar(part: Path, suffix: str) -> Path:
    return part.with_name(part.name + suffix)


def control_path(part: Path) -> Path:
    return _sidecar(part, SUFFIX)


def _read(path: Path) -> bytes | None:
    """The bytes of the regular file at ``path``; None when there is none. A link or a
    FIFO there raises: nothing under the mirror is read through one."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, MAX_BYTES)
    finally:
        os.close(fd)


def read_control(part: Path, part_size: int) -> Control | None:
    """What the part of ``part_size`` bytes holds, from its control file or the sidecars an
    earlier version left; None when nothing trustworthy says (the part is then of unknown
    origin). A control file that claims bytes beyond the part's end is not trusted."""
    text = _read(control_path(part))
    if text is not None:
        control = parse(text)
    elif (text := _read(_sidecar(part, LEGACY_SEGMENTS))) is not None:
        control = parse(text, format=1)
        # a segmented part was preallocated to the size the server stated
        if control is not None and part_size != control.size:
            control = None
        elif control is not None:
            control = dataclasses.replace(control, legacy=True)
    elif (text := _read(_sidecar(part, LEGACY_META))) is not None:
        control = _from_meta(text, part_size)
    else:
        return None
    if control is not None and control.end > part_size:
        return None
    return control


def _from_meta(text: bytes, part_size: int) -> Control | None:
    """A part written in one stream by an earlier version: its bytes are its length's
    prefix, from the answer the validator names."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    validator = doc.get("validator") if isinstance(doc, dict) else None
    if not isinstance(validator, str) or not validator:
        return None  # a part whose origin cannot be named is never appended to
    return Control(None, validator, ((0, part_size),) if part_size else (), legacy=True)


def has_control(part: Path) -> bool:
    """Whether anything beside ``part`` may say what it holds (cheap: no read)."""
    name = os.fspath(part)
    return any(os.path.lexists(name + s) for s in (SUFFIX, LEGACY_SEGMENTS, LEGACY_META))


def write_control(part: Path, control: Control) -> None:
    """Replace the control file atomically and durably. The caller fsyncs the part first:
    the control file must never claim bytes that a power cut could take back.

    The temporary file has a fixed name (``FILE.part.ctl.tmp``): only the holder of the
    part's lock writes it, and a kill mid-write leaves a name the next removal knows.
    """
    path = control_path(part)
    tmp = _sidecar(path, ".tmp")
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        pwrite_all(fd, render(control).encode(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # the rename durable, where the file system allows
        fsync_dir(path.parent)


def remove_control(part: Path, *, legacy: bool = False) -> None:
    """The control file gone, with a temporary one a kill left; with ``legacy``, the
    sidecars an earlier version left too (read once, by :func:`read_control`)."""
    path = control_path(part)
    names = [path, _sidecar(path, ".tmp")]
    if legacy:
        for suffix in (LEGACY_META, LEGACY_SEGMENTS):
            sidecar = _sidecar(part, suffix)
            names += [sidecar, _sidecar(sidecar, ".tmp")]
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
