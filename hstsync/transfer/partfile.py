"""The ``.part`` file on disk: its name, how bytes reach it, and how a disk says no.

Owns the file operations both kinds of transfer share: :func:`part_path` (a file is
written as ``FILE.part`` beside its final name), :func:`preallocate` and
:func:`pwrite` for a segmented part written at offsets, :func:`fsync`, and
:func:`disk_error`, the text of a failed file operation written from its errno name
(``disk full (ENOSPC) writing …``). Plain functions that raise :class:`OSError`; which
failure that becomes is the caller's decision. The rename that gives a part its final
name is in :mod:`hstsync.transfer.finish`, after verification.

Symbolic links: nothing under the mirror is opened through a link hstsync did not make.
:func:`make_dirs` walks from the mirror root to a file's directory refusing any link on
the way, every open of a part uses ``O_NOFOLLOW``, and :func:`refuse_link` is the
``lstat`` check made right before a name is used. All raise ``OSError(ELOOP)``, which
:func:`disk_error` words as ``refused: PATH is a symbolic link``.

The validator sidecar (``FILE.part.meta``): the ETag or Last-Modified of the answer a
plain part's bytes came from, written atomically when that answer arrives, so that a
resume after a restart can send ``If-Range``. A part without one is of unknown origin:
it is fetched again from zero, never appended to.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

META_SUFFIX = ".meta"


def part_path(dest: Path) -> Path:
    """Where ``dest`` is written until it is complete: ``FILE.part`` beside it."""
    return dest.with_name(dest.name + ".part")


_ERRNO_WORDS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "a file is in the way",
    errno.EIO: "I/O error",
}


def disk_error(exc: OSError, doing: str, path: Path) -> str:
    """``disk full (ENOSPC) writing /srv/hst/….part``."""
    code = exc.errno or 0
    if code == errno.ELOOP:
        return f"refused: {exc.filename or path} is a symbolic link"
    word = _ERRNO_WORDS.get(code) or exc.strerror or type(exc).__name__
    name = errno.errorcode.get(code)
    return f"{word} ({name}) {doing} {path}" if name else f"{word} {doing} {path}"


def fsync(path: Path) -> None:
    """The bytes of ``path`` on the disk, before a record or a rename names them."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(part: Path, size: int) -> None:
    """The part at its full size from the start: space is claimed before the bytes
    come (a full disk says so now), and segments write at their offsets."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.ftruncate(fd, size)  # a file system without fallocate: a sparse file
    finally:
        os.close(fd)


def pwrite(fd: int, data: memoryview, offset: int) -> None:
    # written synchronously, like Stream._receive: 1 MiB writes do not stall the loop long
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


# -- symbolic links ---------------------------------------------------------------------


def _link_error(path: Path | str) -> OSError:
    return OSError(errno.ELOOP, "is a symbolic link", str(path))


def refuse_link(path: Path) -> None:
    """Raise ``OSError(ELOOP)`` if ``path`` is a symbolic link (a missing path is fine)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise _link_error(path)


def regular_size(path: Path) -> int | None:
    """The size of the regular file at ``path``; None when there is none (or something
    else is there). :func:`refuse_link`'s ``OSError(ELOOP)`` for a link: both from one
    ``lstat``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _link_error(path)
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _below(root: Path | None, directory: Path) -> list[str] | None:
    """The path of each component of ``directory`` below ``root``, outermost first
    (``[]`` for the root itself); None when ``directory`` is not under ``root``.

    On the strings, not ``Path.relative_to``: these run for every file of a pass, and
    pathlib's parsing and joining was most of their cost. Both are ``Path``s, so
    neither has a trailing or doubled separator; the test is as lexical as
    ``Path.is_relative_to``.
    """
    if root is None:
        return None
    top, here = os.fspath(root), os.fspath(directory)
    if here == top:
        return []
    prefix = top if top.endswith(os.sep) else top + os.sep
    if not here.startswith(prefix):
        return None
    paths: list[str] = []
    current = prefix[:-1] if prefix != os.sep else ""
    for name in here[len(prefix) :].split(os.sep):
        current = f"{current}{os.sep}{name}"
        paths.append(current)
    return paths


def make_dirs(root: Path | None, directory: Path) -> list[str]:
    """Create ``directory`` and those between it and ``root``, refusing symbolic links;
    the directories it made below ``root``, outermost first (their names are not
    durable until their parents are fsynced: ``finish.made_dirs``).

    ``root`` itself (the mirror, which the user may well have made a link) is taken
    as it is; every component below it must be a real directory or is created. Without
    a ``root`` (or outside it) only ``directory`` itself is checked.
    """
    below = _below(root, directory)
    if below is None:
        refuse_link(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return []
    assert root is not None
    if not os.path.isdir(root):  # followed: the root may be a link
        root.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    for current in below:
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            try:
                os.mkdir(current)
                made.append(current)
            except FileExistsError:  # another transfer made it
                pass
            mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            raise _link_error(current)
        if not stat.S_ISDIR(mode):  # a file where a directory must go, as mkdir says it
            raise OSError(errno.EEXIST, "a file is in the way", current)
    return made


def check_dirs(root: Path | None, directory: Path) -> None:
    """Right before a name in ``directory`` is used: no component below ``root`` is a link."""
    below = _below(root, directory)
    for current in below if below is not None else [os.fspath(directory)]:
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # nor is any below it
        if stat.S_ISLNK(mode):
            raise _link_error(current)


def open_part(part: Path, *, append: bool) -> BinaryIO:
    """The part for writing at its end (``append``) or from zero, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(part, flags, 0o666)
    return os.fdopen(fd, "ab" if append else "wb")


# -- the validator sidecar --------------------------------------------------------------


def meta_path(part: Path) -> Path:
    return part.with_name(part.name + META_SUFFIX)


def write_meta(part: Path, validator: str | None) -> None:
    """Record where a plain part's bytes come from, atomically (temporary file, rename)."""
    path = meta_path(part)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"format": 1, "validator": validator}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_meta(part: Path) -> str | None:
    """The validator saved for ``part``; None when there is none (or it cannot be read):
    the part's origin cannot be checked."""
    try:
        fd = os.open(meta_path(part), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            doc = json.loads(fh.read(4096))
    except (OSError, ValueError, RecursionError):
        return None
    validator = doc.get("validator") if isinstance(doc, dict) else None
    return validator if isinstance(validator, str) and validator else None


def remove_meta(part: Path) -> None:
    path = meta_path(part)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
