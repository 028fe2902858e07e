"""FITS files read plainly: the headers parsed here and the standard's sums taken with
numpy over the bytes as they are, no astropy.

A plain file (cards of printable ASCII, the standard HDU kinds, nothing after the last
HDU) is read by :func:`plainly_sound`: each HDU's DATASUM must match and the HDU must sum
to -0, the FITS standard's own check; a few tens of microseconds for a small file. This
reader only ever says "sound": anything it does not read plainly, and any sum that does
not check out, goes to astropy (``verify``), whose verdict and words are final.
:func:`mapped_sound` reads a file in place through ``mmap``, never into memory twice.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path

BLOCK = 2880


_END_CARD = b"END" + b" " * 77
#: the bytes a plain header is made of (NUL padding, tabs, Latin-1: astropy reads it)
_PRINTABLE = bytes(range(0x20, 0x7F))
#: cards whose keyword fields are upper-case letters, digits, ``_`` and ``-``, padded
#: with spaces to 8 bytes (the value fields: any of the printable bytes)
_KEYWORDS = re.compile(
    rb"(?:(?:"
    + b"|".join(rb"[A-Z0-9_-]{%d}%s" % (n, b" " * (8 - n)) for n in range(9))
    + rb").{72})*",
    re.DOTALL,
)
_INT_VALUE = re.compile(rb"= +([-+]?[0-9]{1,18}) *(?:/.*)?")
_LOGICAL_VALUE = re.compile(rb"= +([TF]) *(?:/.*)?")
_STRING_VALUE = re.compile(rb"= *'((?:[^']|'')*)' *(?:/.*)?")
_BYTES_PER_VALUE = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
_EXTENSIONS = frozenset({"IMAGE", "BINTABLE", "TABLE"})
#: the keywords that give an HDU its size and its sums: each at most once
_STRUCTURAL = frozenset(
    {b"SIMPLE", b"XTENSION", b"BITPIX", b"NAXIS", b"PCOUNT", b"GCOUNT", b"GROUPS"}
    | {b"CHECKSUM", b"DATASUM", b"ZIMAGE"}
)
_STRUCTURAL_FIELDS = frozenset(key.ljust(8) for key in _STRUCTURAL)
#: bytes summed in one numpy call (its uint64 total cannot overflow); a mapped file's
#: pages are let go after each, so checking a file of any size holds about this much
_SUM_SPAN = 64 << 20
#: Linux's "these pages may go": a mapped file's are read again from the page cache
_LET_GO = getattr(mmap, "MADV_DONTNEED", None)


def mapped_sound(path: Path) -> bool:
    with open(path, "rb") as fh:
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file: astropy says what it is
            return False
    with mapped:
        view = memoryview(mapped)
        try:
            return plainly_sound(view)
        finally:
            view.release()


def plainly_sound(data: bytes | memoryview) -> bool:
    """True when ``data`` is a standard FITS file whose sums check out; False when it
    is anything else (then astropy decides: it may be sound, non-compliant or corrupt)."""
    size = len(data)
    position = 0
    while position < size:
        header = _header_at(data, position)
        if header is None:
            return False
        cards, length = header
        first = position == 0
        size_of = _data_size(cards, first=first)
        if size_of is None:
            return False
        start = position + length
        end = start + size_of
        padded = end + (-end % BLOCK)
        if padded > size:
            return False  # truncated: astropy words it
        # the data's sum runs over its fill too (as astropy and the standard take it)
        if not _sums_check(data, cards, position, start, padded):
            return False  # a mismatch, or sums astropy must judge
        position = padded
    return position == size and size > 0


def _header_at(data: bytes | memoryview, position: int) -> tuple[dict[bytes, bytes], int] | None:
    """The header at ``position``: its cards' value fields by keyword (structural
    keywords only) and its length in bytes; None when it is not plainly readable.

    Read a block at a time, each checked whole (one regex for all its keywords; a
    regex per card was most of a small file's check), then only the structural
    cards are looked at one by one."""
    if bytes(data[position : position + 8]) not in (b"SIMPLE  ", b"XTENSION"):
        return None
    cards: dict[bytes, bytes] = {}
    offset = position
    size = len(data)
    while offset + BLOCK <= size:
        block = bytes(data[offset : offset + BLOCK])
        offset += BLOCK
        if block.translate(None, _PRINTABLE):
            return None
        end = end_card(block)
        head = block if end < 0 else block[:end]
        if not _KEYWORDS.fullmatch(head):
            return None
        for at in range(0, len(head), 80):
            field = head[at : at + 8]
            if field in _STRUCTURAL_FIELDS or field[:5] == b"NAXIS":
                key = field.rstrip(b" ")
                if key in cards:
                    return None
                cards[key] = head[at + 8 : at + 80]
        if end >= 0:
            if block[end + 80 :].strip(b" "):
                return None  # something after END: astropy reads it
            return cards, offset - position
    return None


def end_card(block: bytes) -> int:
    """Where the END card of a header block starts (a card boundary), or -1."""
    at = block.find(_END_CARD)
    while at > 0 and at % 80:
        at = block.find(_END_CARD, at + 1)
    return at


def _int(cards: dict[bytes, bytes], key: bytes, default: int | None = None) -> int | None:
    field = cards.get(key)
    if field is None:
        return default
    match = _INT_VALUE.fullmatch(field)
    return int(match[1]) if match else None


def _string(field: bytes | None) -> str | None:
    match = _STRING_VALUE.fullmatch(field) if field is not None else None
    return match[1].replace(b"''", b"'").decode("ascii").rstrip(" ") if match else None


def _data_size(cards: dict[bytes, bytes], *, first: bool) -> int | None:
    """The bytes of an HDU's data (padding excluded), from its header; None when the
    header is not one the plain reader takes."""
    if first:
        simple = cards.get(b"SIMPLE")
        match = _LOGICAL_VALUE.fullmatch(simple) if simple is not None else None
        if not match or match[1] != b"T" or b"XTENSION" in cards or b"GROUPS" in cards:
            return None
    elif _string(cards.get(b"XTENSION")) not in _EXTENSIONS or b"SIMPLE" in cards:
        return None
    if b"ZIMAGE" in cards:
        return None  # a compressed image: astropy's
    bitpix = _int(cards, b"BITPIX")
    naxis = _int(cards, b"NAXIS")
    pcount = _int(cards, b"PCOUNT", 0)
    gcount = _int(cards, b"GCOUNT", 1)
    if bitpix not in _BYTES_PER_VALUE or naxis is None or not 0 <= naxis <= 999:
        return None
    if pcount is None or gcount is None or pcount < 0 or gcount < 0:
        return None
    if sum(key.startswith(b"NAXIS") for key in cards) != naxis + 1:
        return None
    if naxis == 0:
        return 0
    values = 1
    for axis in range(1, naxis + 1):
        length = _int(cards, b"NAXIS%d" % axis)
        if length is None or length < 0:
            return None
        values *= length
    return _BYTES_PER_VALUE[bitpix] * gcount * (pcount + values)


def _sums_check(
    data: bytes | memoryview, cards: dict[bytes, bytes], position: int, start: int, end: int
) -> bool:
    """DATASUM and CHECKSUM, where the header has them, as the FITS standard checks
    them: the data's ones' complement sum is DATASUM, the whole HDU's is -0."""
    has_checksum = b"CHECKSUM" in cards
    if b"DATASUM" not in cards:
        # astropy checks a CHECKSUM without DATASUM against the header alone: its call
        return not has_checksum
    stated = _string(cards[b"DATASUM"])
    if stated is None or not stated.isdigit():
        return False
    datasum = _ones_sum(data, start, end)
    if datasum != int(stated):
        return False
    if has_checksum:
        if _string(cards[b"CHECKSUM"]) is None:
            return False
        total = _fold(_ones_sum(data, position, start) + datasum)
        if total != 0xFFFFFFFF:
            return False
    return True


def _ones_sum(data: bytes | memoryview, start: int, end: int) -> int:
    """The ones' complement sum of big-endian 32-bit words of ``data[start:end]``
    (a last partial word padded with zeros)."""
    import numpy as np  # astropy's dependency; loaded only when a FITS file is read

    total = 0
    words_end = end - (end - start) % 4
    mapped = data.obj if isinstance(data, memoryview) else None
    for at in range(start, words_end, _SUM_SPAN):
        piece = data[at : min(at + _SUM_SPAN, words_end)]
        total += int(np.frombuffer(piece, dtype=">u4").sum(dtype=np.uint64))
        length = len(piece)
        del piece
        if isinstance(mapped, mmap.mmap) and _LET_GO is not None:
            # summed: out of this process's memory (a 5 GB file would fill it)
            base = at - at % mmap.PAGESIZE
            mapped.madvise(_LET_GO, base, at + length - base)
    if words_end < end:
        total += int.from_bytes(bytes(data[words_end:end]).ljust(4, b"\0"), "big")
    return _fold(total)


def _fold(total: int) -> int:
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total
