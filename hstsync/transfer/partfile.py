"""The ``.part`` file on disk: its name, how bytes reach it, and how a disk says no.

Owns the file operations both kinds of transfer share: :func:`part_path` (a file is
written as ``FILE.part`` beside its final name), :func:`preallocate` and
:func:`pwrite` for a segmented part written at offsets, :func:`fsync`, and
:func:`disk_error`, the text of a failed file operation written from its errno name
(``disk full (ENOSPC) writing …``). Plain functions that raise :class:`OSError`; which
failure that becomes is the caller's decision. The rename that gives a part its final
name is in :mod:`hstsync.transfer.downloader`, after verification.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


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
    word = _ERRNO_WORDS.get(code) or exc.strerror or type(exc).__name__
    name = errno.errorcode.get(code)
    return f"{word} ({name}) {doing} {path}" if name else f"{word} {doing} {path}"


def fsync(path: Path) -> None:
    """The bytes of ``path`` on the disk, before a record or a rename names them."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(part: Path, size: int) -> None:
    """The part at its full size from the start: space is claimed before the bytes
    come (a full disk says so now), and segments write at their offsets."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
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
    # written synchronously, like Downloader._receive: 1 MiB writes do not stall the loop long
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
