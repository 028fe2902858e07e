"""The content hash of every file landed: SHA-256, taken while the bytes stream.

Why SHA-256: it is the hash people already check files with (``sha256sum``, rclone,
other archives' manifests), so a recorded hash means something outside hstsync too; and
where the CPU has the SHA extensions (most x86-64 and ARMv8 servers) OpenSSL's SHA-256
is faster than BLAKE2b (``bench/`` measures it on the machine at hand).

SHA-256 takes bytes in order. :class:`Digest` follows the file's prefix: a chunk that
starts where the hash stands is hashed as it arrives (a whole-file stream, a small body,
the first range of a segmented file), one that arrives ahead of it is not, and
:meth:`Digest.catch_up` reads what the hash has not seen from the part before it is
renamed (the ranges of a segmented file beyond the first, a part resumed from an
earlier run). :func:`hash_file` hashes a file already in place, for ``verify``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hstsync.errors import TransferError
from hstsync.transfer.disk import open_regular

ALGORITHM = "sha256"
_READ = 1 << 20


class Digest:
    """SHA-256 of a file written at offsets, hashed where the bytes come in order."""

    __slots__ = ("_hash", "position")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        #: bytes ``0..position`` are hashed
        self.position = 0

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes written at ``offset``: hashed now if they continue what is hashed."""
        if offset == self.position:
            self._hash.update(data)
            self.position += len(data)

    def catch_up(self, fd: int, size: int) -> None:
        """Hash bytes ``position..size`` of the open file ``fd`` (blocking: a worker thread's)."""
        while self.position < size:
            chunk = os.pread(fd, min(_READ, size - self.position), self.position)
            if not chunk:
                raise TransferError(f"the partial file ended at byte {self.position} of {size}")
            self._hash.update(chunk)
            self.position += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def hash_file(path: Path) -> str:
    """The SHA-256 of the regular file at ``path`` (never through a link, never a FIFO);
    blocking, it reads the whole file."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return hashlib.file_digest(fh, ALGORITHM).hexdigest()
