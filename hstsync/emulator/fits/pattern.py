"""The data of a body: a pseudo-random pattern repeated forever, addressable by offset.

Owns the bytes after a body's header: any range of them is computed without
generating the file (the pattern is tiled once, a slice served from the tiles), and
the DATASUM of any prefix is known in constant time (word sums of every prefix of
one period are kept). The pattern is :data:`PATTERN_LENGTH` bytes, a prime, so it
never lines up with FITS blocks or power-of-two chunk sizes: a body shifted by any
number of bytes no longer compares equal.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hstsync.emulator.fits.checksum import fold32

#: A prime: not a multiple of 2880, nor of any power of two.
PATTERN_LENGTH = 65521
#: Bytes of one "super period": the pattern repeated until it realigns with 32-bit words.
_WORD_PERIOD = 4 * PATTERN_LENGTH
#: The longest slice served from the pre-tiled buffer in one copy.
_TILE_SPAN = 1 << 20


def _translation(alphabet: bytes) -> bytes:
    return bytes(alphabet[i % len(alphabet)] for i in range(256))


class Pattern:
    """The data of one product: a pattern repeated forever, addressable by offset.

    ``generation`` > 0 gives a reprocessed file's data (another pattern); ``alphabet``
    maps every byte into it (text bodies)."""

    __slots__ = ("_prefix", "_tile", "_word_total")

    def __init__(self, data_uri: str, generation: int = 0, alphabet: bytes = b"") -> None:
        seed = b"hstsync-emulator\0" + data_uri.encode()
        if generation:
            seed += f"\0generation {generation}".encode()
        pattern = hashlib.shake_256(seed).digest(PATTERN_LENGTH)
        if alphabet:
            pattern = pattern.translate(_translation(alphabet))
        reps = -(-(PATTERN_LENGTH + _TILE_SPAN) // PATTERN_LENGTH)
        self._tile = pattern * max(reps, 4)
        # Word sums of every prefix of one super period, for O(1) DATASUMs.
        words = np.frombuffer(self._tile[:_WORD_PERIOD], dtype=">u4").astype(np.uint64)
        self._prefix = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(words)])
        self._word_total = int(self._prefix[-1])

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the endless data stream from ``offset``."""
        pieces = []
        while length > 0:
            start = offset % PATTERN_LENGTH
            n = min(length, _TILE_SPAN)
            pieces.append(self._tile[start : start + n])
            offset += n
            length -= n
        return b"".join(pieces) if len(pieces) != 1 else pieces[0]

    def datasum(self, length: int) -> int:
        """The FITS DATASUM of the first ``length`` bytes (``length`` % 4 == 0)."""
        full, rest = divmod(length, _WORD_PERIOD)
        return fold32(full * self._word_total + int(self._prefix[rest // 4]))
