"""Writing small files safely: the one atomic, durable, link-proof write hstsync uses.

Manifests written by ``hstsync add``, segment records beside a ``.part``, results
tables and the notes left beside a set-aside manifest all go through
:func:`atomic_write`: the bytes go to a fresh temporary file in the same directory
(created with ``O_EXCL | O_NOFOLLOW``, so a planted file or symlink of that name is
never written through), are fsynced, and are renamed over the target. ``rename``
replaces a symlink at the target itself, never the file it points to, so a link planted
where a note will go cannot redirect the write (issue: a ``NAME.error.txt`` symlinked to
the database). The directory is fsynced last so the new name survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


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
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
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
