"""A set of texts held as small digests: what a resolution has already met.

A big program is resolved batch by batch and page by page, and two things must
remember, for the whole resolution, every text they have met: the obsids the pages
have brought (:class:`~hstsync.archive.paging.Batcher`) and the dataURIs and paths the
batches have given out (:class:`~hstsync.archive.rows.Claims`). At 100,000 products a
set of the strings would be the biggest thing a pass holds; :class:`Seen` keeps 16
bytes for each. Pure; numpy is imported only when a set is made (``status`` never
loads it).
"""

from __future__ import annotations

import hashlib
import os


class Seen:
    """A set of texts that keeps 16 bytes for each: a keyed 120-bit digest (which never
    collides by chance; the key is new for every set), in a sorted numpy array.

    A Python set of 100,000 strings takes ~15 MB, of digests ~9 MB; this ~1.6 MB.
    The newest digests wait in a small set and join the array in runs.
    """

    RUN = 4096

    def __init__(self) -> None:
        import numpy as np

        self._key = os.urandom(16)
        # "S16" drops trailing NUL bytes: every digest ends in 0x01 (see _digest)
        self._sorted = np.empty(0, dtype="S16")
        self._recent: set[bytes] = set()

    def _digest(self, text: str) -> bytes:
        data = text.encode("utf-8", "surrogateescape")
        return hashlib.blake2b(data, digest_size=15, key=self._key).digest() + b"\x01"

    def __contains__(self, text: str) -> bool:
        return self._holds(self._digest(text))

    def _holds(self, digest: bytes) -> bool:
        if digest in self._recent:
            return True
        index = int(self._sorted.searchsorted(digest))
        return index < len(self._sorted) and bytes(self._sorted[index]) == digest

    def add(self, text: str) -> bool:
        """Hold ``text``; True when it was not held before (one digest, one lookup)."""
        digest = self._digest(text)
        if self._holds(digest):
            return False
        self._recent.add(digest)
        if len(self._recent) >= self.RUN:
            import numpy as np

            run = np.array(sorted(self._recent), dtype="S16")
            self._sorted = np.union1d(self._sorted, run)
            self._recent.clear()
        return True

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)
