"""Writing small files safely: the one atomic, durable, link-proof write hstsync uses.

Manifests written by ``hstsync add``, segment records beside a ``.part``, results
tables and the notes left beside a set-aside manifest all go through
:func:`atomic_write`: the bytes go to a fresh temporary file in the same directory
(created with ``O_EXCL | O_NOFOLLOW``, so a planted file or symlink of that name is
never written through), are fsynced, and are renamed over the target. ``rename``
replaces a symlink at the target itself, never the file it points to, so a link planted
where a note will go cannot redirect the write (issue: a ``NAME.error.txt`` symlinked to
the database). The directory is fsynced last so the new name survives a power cut.

:func:`open_directory` opens a directory hstsync writes into (``failed/`` beside the
manifests, ``results/`` in the mirror) without following a link planted in its place,
making it with an explicit mode: under ``umask 0`` nothing hstsync makes is writable by
other users. :func:`sweep_temporaries` removes what a ``kill -9`` left of an atomic
write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: the longest file name, in bytes, of the file systems hstsync meets (ext4, xfs, tmpfs)
NAME_MAX = 255
#: a directory hstsync makes: others may read it (``status`` run by another user), never
#: write it; the umask may take more away
DIRECTORY_MODE = 0o755


def open_directory(
    name: str | Path,
    *,
    dir_fd: int | None = None,
    create: bool = False,
    mode: int = DIRECTORY_MODE,
    label: str | Path | None = None,
) -> int:
    """An open descriptor of the directory ``name`` (in ``dir_fd`` if given), made with
    ``mode`` first when ``create``. Raises :class:`OSError` whose ``strerror`` says
    "refused: LABEL is not a directory (a symbolic link?)" (``label``: how to name it,
    ``name`` by default) when something else is there: a link planted in its place would
    carry what is written there elsewhere."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=dir_fd)
    try:
        return os.open(name, _DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(
                exc.errno, f"refused: {label or name} is not a directory (a symbolic link?)"
            ) from None
        raise


def make_directories(path: Path, mode: int = DIRECTORY_MODE) -> None:
    """``mkdir -p`` with ``mode`` for every directory made, the parents too (``Path.mkdir``
    gives the parents the default mode, 0777 less the umask: under ``umask 0``, 0777)."""
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, mode)


def _temporary_name(name: str) -> str:
    """``.NAME.HEX.tmp`` beside ``NAME``, or ``.hstsync-HEX.tmp`` when that would be longer
    than a file name may be (a note for a manifest whose name is near the limit)."""
    tag = secrets.token_hex(4)
    tmp = f".{name}.{tag}.tmp"
    if len(os.fsencode(tmp)) <= NAME_MAX:
        return tmp
    return f".hstsync-{tag}.tmp"


def sweep_temporaries(dir_fd: int, name: str, older_than: float) -> int:
    """Remove the temporary files an atomic write of ``name`` left in ``dir_fd`` (a
    ``kill -9`` between creating and renaming one) once ``older_than`` seconds old; a
    younger one may be another process's write in flight. Returns how many went."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{8}}\.tmp")
    cutoff = time.time() - older_than
    removed = 0
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.name, dir_fd=dir_fd)
                    removed += 1
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new name in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes | str | Iterable[bytes],
    *,
    mode: int = 0o644,
    durable: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` (or the chunks it yields), all or nothing.

    Raises :class:`OSError` (the temporary file is removed). ``durable=False`` skips
    the fsyncs for files that are cheap to make again. With ``dir_fd`` (an open
    directory), ``path``'s name is taken in that directory, whatever its path now
    leads to: a directory checked once cannot be swapped for a symlink meanwhile.
    """
    chunks: Iterable[bytes]
    if isinstance(data, str):
        chunks = [data.encode("utf-8")]
    elif isinstance(data, bytes):
        chunks = [data]
    else:
        chunks = data  # written as they come: a big file is never held whole
    tmp = path.with_name(_temporary_name(path.name))
    if dir_fd is not None:
        tmp, path = Path(tmp.name), Path(path.name)
    fd = os.open(tmp, _FLAGS, mode, dir_fd=dir_fd)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    if durable:
        if dir_fd is not None:
            os.fsync(dir_fd)
        else:
            fsync_directory(path.parent)
