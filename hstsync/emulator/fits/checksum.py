"""The FITS checksum arithmetic: ones' complement sums of 32-bit words and their encoding.

Owns the numbers behind the ``DATASUM`` and ``CHECKSUM`` cards (the FITS checksum
convention, SPR A.7.2), apart from the cards themselves, so that the data's sums
(:class:`~hstsync.emulator.fits.pattern.Pattern`) and the header's
(:mod:`hstsync.emulator.fits.header`) are the same arithmetic.
"""

from __future__ import annotations

import numpy as np

_EXCLUDE = frozenset([*range(0x3A, 0x41), *range(0x5B, 0x61)])


def fold32(total: int) -> int:
    """A big sum folded into 32 bits with end-around carry (ones' complement)."""
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def word_sum(data: bytes) -> int:
    """The plain sum of big-endian 32-bit words (``len(data)`` a multiple of 4)."""
    return int(np.frombuffer(data, dtype=">u4").sum(dtype=np.uint64))


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a FITS checksum (SPR A.7.2)."""
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[15:] + asc[:15]).decode("ascii")
