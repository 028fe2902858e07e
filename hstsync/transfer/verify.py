"""Checks beyond size: a file must be what its name says before it counts as done.

Owns content verification. A file named ``*.fits`` must open as FITS with astropy,
every HDU that carries ``CHECKSUM``/``DATASUM`` cards must match them, and every HDU
must be whole. Corrupt means: a checksum mismatch, a truncated file or HDU, or not
FITS at all (an HTML error page served with 200). Other names (previews,
``.fits.gz``) are not checked beyond their size.

Non-compliant is not corrupt. Files in the archive carry NUL padding after END,
non-standard cards, long CONTINUE strings, a first card other than SIMPLE, stray
bytes after the last HDU; astropy warns about them (``VerifyWarning``,
``AstropyUserWarning``) and reads them. Those warnings are logged once per message at
INFO (each file's at DEBUG) and never fail a file, and none reaches the user's
terminal. Only the warnings that mean lost bytes (``File may have been truncated``)
count against a file.

Two readers. A plain file (cards of printable ASCII, the standard HDU kinds, nothing
after the last HDU) is read by :func:`_plainly_sound`: the headers parsed here, the
sums taken with numpy over the bytes as they are (a file's DATASUM must match and its
HDU must sum to -0, the FITS standard's own check), no astropy, a few tens of
microseconds for a small file. That reader only ever says "sound": anything it does
not read plainly, and any sum that does not check out, goes to astropy, whose verdict
and words are final (a mismatch, a truncation, a file that is not FITS).

Blocking: it reads the whole file, so callers run it in a worker thread. It streams:
the file is memory-mapped (or handed over in memory) and summed in place, never read
into memory a second time. The warnings machinery is process-global, so astropy's
verifications take a lock, and only warnings issued by ``astropy.io.fits`` count,
not those of another thread.
"""

from __future__ import annotations

import logging
import mmap
import re
import threading
import warnings
from pathlib import Path
from typing import Any

from hstsync.errors import CorruptFileError

log = logging.getLogger(__name__)

#: one verification at a time: ``warnings.catch_warnings`` is not thread-safe
_LOCK = threading.Lock()
BLOCK = 2880
#: a FITS card's keyword field: up to 8 of A-Z 0-9 _ -, padded with spaces
_FIRST_CARD = re.compile(rb"[A-Z0-9_-]{1,8} {0,7}[ -~]{72}")
#: astropy's words for bytes that are missing: corrupt, not merely non-compliant
_LOST_BYTES = ("truncated",)
#: non-compliance messages already logged at INFO in this process
_SEEN: set[str] = set()


def needs_verification(name: str) -> bool:
    """Whether a file of this (final) name gets a content check."""
    return name.lower().endswith(".fits")


def verify_file(path: Path, name: str, data: bytes | None = None) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` holds a sound ``name``.

    ``name`` is the file's final name (``path`` is usually its ``.part``). ``data``:
    the bytes ``path`` holds, when the caller has them in memory (not read again).
    An ``OSError`` with an errno (the disk failed) propagates unchanged.
    """
    if not needs_verification(name):
        return
    if data is not None:
        if _plainly_sound(data):
            return
    elif _mapped_sound(path):
        return
    with _LOCK:
        _verify_fits(path)


# -- the plain reader: standard files without astropy -------------------------------------

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
#: bytes summed in one numpy call: its uint64 total cannot overflow
_SUM_SPAN = 1 << 30


def _mapped_sound(path: Path) -> bool:
    with open(path, "rb") as fh:
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file: astropy says what it is
            return False
    with mapped:
        view = memoryview(mapped)
        try:
            return _plainly_sound(view)
        finally:
            view.release()


def _plainly_sound(data: bytes | memoryview) -> bool:
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
        end = _end_card(block)
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


def _end_card(block: bytes) -> int:
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
    for at in range(start, words_end, _SUM_SPAN):
        piece = data[at : min(at + _SUM_SPAN, words_end)]
        total += int(np.frombuffer(piece, dtype=">u4").sum(dtype=np.uint64))
        del piece
    if words_end < end:
        total += int.from_bytes(bytes(data[words_end:end]).ljust(4, b"\0"), "big")
    return _fold(total)


def _fold(total: int) -> int:
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _verify_fits(path: Path) -> None:
    with open(path, "rb") as fh:
        first = fh.read(80)
        size = fh.seek(0, 2)
    if len(first) < 80 or not _FIRST_CARD.fullmatch(first):
        raise CorruptFileError("not a valid FITS file (it does not start with a FITS header)")
    if size < BLOCK:
        raise CorruptFileError(f"not a valid FITS file (truncated: {size} bytes)")

    # Imported here: astropy.io.fits costs a few hundred ms to import, and a daemon
    # mirroring only previews should not pay for it.
    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # ignore_missing_simple: a first card other than SIMPLE is non-compliant,
            # and astropy's "try with ignore_missing_simple=True" must not reach users
            with fits.open(
                path,
                memmap=True,
                checksum=False,
                lazy_load_hdus=False,
                ignore_missing_simple=True,
            ) as hdus:
                _check_hdus(path, hdus, size, [str(w.message) for w in _ours(caught)])
        except CorruptFileError:
            raise
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise CorruptFileError(f"not a valid FITS file ({_first_line(exc)})") from None
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            # astropy's parsers raise these for headers or data it cannot make sense
            # of (a data part shorter than its header says: TypeError, buffer too small)
            lost = _lost(_ours(caught))
            reason = lost or _first_line(exc)
            raise CorruptFileError(f"not a valid FITS file ({reason})") from None
    notes = sorted({_first_line(w.message) for w in _ours(caught)})
    if notes:
        log.debug("%s: FITS not fully compliant (read anyway): %s", path.name, "; ".join(notes))
        for note in notes:
            key = re.sub(r"\d+", "N", note)
            if key not in _SEEN:
                _SEEN.add(key)
                log.info("FITS not fully compliant, read anyway (said once): %s", note)


def _check_hdus(path: Path, hdus: Any, size: int, messages: list[str]) -> None:
    lost = _lost_text(messages)
    if lost:
        raise CorruptFileError(f"not a valid FITS file ({lost})")
    if len(hdus) == 0:
        raise CorruptFileError("not a valid FITS file (no HDU)")
    end = 0
    for index, hdu in enumerate(hdus):
        if type(hdu).__name__ == "_CorruptedHDU":
            raise CorruptFileError(f"not a valid FITS file (HDU {index} cannot be read)")
        info = hdu.fileinfo()
        end = int(info["datLoc"]) + int(getattr(hdu, "_data_size", 0) or 0)
        if end > size:
            raise CorruptFileError(
                f"not a valid FITS file (truncated in HDU {index}: {size} of {end} bytes)"
            )
        # verify_* return 0 for a mismatch, 1 for a match, 2 without the card
        if hdu.verify_datasum() == 0 or hdu.verify_checksum() == 0:
            raise CorruptFileError(f"FITS checksum mismatch in HDU {index} — the file is corrupt")
    _check_tail(path, end, size)


def _check_tail(path: Path, end: int, size: int) -> None:
    """Bytes after the last HDU astropy read: padding and strays are non-compliant; an
    extension header there that could not be read is a truncated (or damaged) HDU."""
    start = end + (-end % BLOCK)
    if start >= size:
        return
    with open(path, "rb") as fh:
        fh.seek(start)
        head = fh.read(8)
    if head.startswith(b"XTENSION"):
        raise CorruptFileError(
            f"not a valid FITS file (an extension at byte {start} cannot be read: "
            "truncated or damaged)"
        )


def _ours(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if "astropy/io/fits" in w.filename.replace("\\", "/")]


def _lost(caught: list[warnings.WarningMessage]) -> str | None:
    return _lost_text([str(w.message) for w in caught])


def _lost_text(messages: list[str]) -> str | None:
    for message in messages:
        if any(word in message.lower() for word in _LOST_BYTES):
            return _first_line(message)
    return None


def _first_line(what: object) -> str:
    text = str(what).strip().splitlines()
    line = text[0].strip() if text else type(what).__name__
    return line[:200]
