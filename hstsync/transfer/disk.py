"""The mirror's disk, safely: opening only regular files, never through a link, and saying
plainly why a disk said no.

Nothing under the mirror is opened through a symbolic link hstsync did not make, and
nothing that is not a regular file is opened at all: :func:`open_regular` opens with
``O_NOFOLLOW | O_NONBLOCK`` (a FIFO planted at a part's name cannot block the process)
and checks with ``fstat`` that a regular file is what it got. :func:`make_dirs` walks from
the mirror root to a file's directory refusing any link on the way; :func:`check_dirs`
and :func:`refuse_link` are the ``lstat`` checks made right before a name is used. Both
refusals are :class:`OSError` s (``ELOOP``, :class:`NotRegular`) that :func:`disk_error`
words for people (``refused: … is a symbolic link``, ``refused: … is not a regular
file``), as it words every failed file operation from its errno name (``disk full
(ENOSPC) writing …``). :func:`disk_failure` is what a transfer raises for one: a
shortage that passes (out of descriptors, ``EMFILE``) is retried after a wait like a
network error; anything else (a full disk, a link) ends the transfer.

Modes are explicit: files are created ``0644`` and directories ``0755``, so a process
started with umask 0 never leaves the mirror writable by every local user; the umask
still takes away (systemd's ``UMask=0027`` gives ``0640``/``0750``).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from hstsync.errors import Refused, TransferError

FILE_MODE = 0o644
DIR_MODE = 0o755
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIRECTORY = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0) | CLOEXEC


class NotRegular(OSError):
    """Something other than a regular file (a FIFO, a device, a directory) is at a path
    hstsync would open as one."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


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
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.ENOMEM: "out of memory",
}

#: a shortage of the process or the machine that passes (other transfers close their
#: files, memory is given back): the file is tried again after a wait, not given up
SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})


def disk_error(exc: OSError, doing: str, path: Path) -> str:
    """``disk full (ENOSPC) writing /srv/hst/….part``."""
    if isinstance(exc, NotRegular):
        return f"refused: {exc.filename or path} is not a regular file"
    code = exc.errno or 0
    if code == errno.ELOOP:
        return f"refused: {exc.filename or path} is a symbolic link"
    word = _ERRNO_WORDS.get(code) or exc.strerror or type(exc).__name__
    name = errno.errorcode.get(code)
    return f"{word} ({name}) {doing} {path}" if name else f"{word} {doing} {path}"


def disk_failure(exc: OSError, doing: str, path: Path) -> TransferError | Refused:
    """What a transfer raises for a failed file operation, worded by :func:`disk_error`:
    a :data:`SHORTAGES` one is retried (:class:`TransferError`), any other is final."""
    words = disk_error(exc, doing, path)
    return TransferError(words) if exc.errno in SHORTAGES else Refused(words)


def open_regular(path: Path | str, flags: int, *, dir_fd: int | None = None) -> int:
    """A descriptor of the regular file at ``path`` (created ``0644`` with ``O_CREAT``):
    never through a link (``ELOOP``), never blocking on a FIFO, and :class:`NotRegular`
    for anything but a regular file. The descriptor is blocking once returned."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, FILE_MODE, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: Path, limit: int = 1 << 16) -> bytes | None:
    """The first ``limit`` bytes of the regular file at ``path``; None when there is none.
    A link or a FIFO there raises (:func:`open_regular`)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def fsync_dir(directory: Path | str) -> None:
    """A rename or a new name in ``directory`` made durable (where the file system
    allows it: an error is the caller's to ignore or not)."""
    fd = os.open(directory, DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """The file at its full size from the start: space is claimed before the bytes come
    (a full disk says so now), and ranges are written at their offsets."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate: a sparse file


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# -- symbolic links and directories ---------------------------------------------------------


def _link_error(path: Path | str) -> OSError:
    return OSError(errno.ELOOP, "is a symbolic link", str(path))


def refuse_link(path: Path | str, *, dir_fd: int | None = None) -> None:
    """Raise ``OSError(ELOOP)`` if ``path`` is a symbolic link (a missing path is fine)."""
    try:
        mode = os.lstat(path, dir_fd=dir_fd).st_mode
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


def file_size(path: Path) -> int | None:
    """The size of a regular file at ``path`` (never through a link), else None."""
    try:
        return regular_size(path)
    except OSError:  # a link, or a path that cannot be read: no file to count
        return None


def _below(root: Path | None, directory: Path) -> list[str] | None:
    """The path of each component of ``directory`` below ``root``, outermost first
    (``[]`` for the root itself); None when ``directory`` is not under ``root``.

    On the strings, not ``Path.relative_to``: these run for every file of a pass. Both
    are ``Path``s, so neither has a trailing or doubled separator; the test is as
    lexical as ``Path.is_relative_to``.
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
    the directories it made below ``root``, outermost first (their names are durable
    only once their parents are fsynced: the first file landed below each does that).

    ``root`` itself (the mirror, which the user may well have made a link) is taken
    as it is; every component below it must be a real directory or is created. Without
    a ``root`` (or outside it) only ``directory`` itself is checked.
    """
    below = _below(root, directory)
    if below is None:
        refuse_link(directory)
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        return []
    assert root is not None
    if not os.path.isdir(root):  # followed: the root may be a link
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    made: list[str] = []
    for current in below:
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            try:
                os.mkdir(current, DIR_MODE)
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
