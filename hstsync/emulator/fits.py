"""File bodies the emulator serves: deterministic, random-access, valid FITS.

Owns the bytes of every product. A body is a pure function of ``(dataURI, size,
style, provenance)``:
any byte range can be computed without generating the file, so the server streams
files of many gigabytes with bounded memory, and a test can ask for the exact
bytes it should have received.

When ``size`` is a multiple of 2880 and at least 5760, the body is a valid FITS file:
one 2880-byte primary header (BITPIX=8, NAXIS=1, NAXIS1=size-2880, FILENAME, ORIGIN,
DATASUM, CHECKSUM) and then the data. Other sizes get the data pattern alone.

The body's :class:`~hstsync.emulator.quirks.BodyStyle` picks other real-world
shapes: FITS without checksum cards; FITS whose header astropy warns about but
reads (NUL padding after END, a lower-case keyword, a value with no space before
its comment slash, a long string continued over CONTINUE cards); and a
JPEG-framed preview (SOI, JFIF APP0, a scan, EOI) of any size of at least 32 bytes;
and plain text (the JWST pipeline's ``_asn.json`` and ``_cat.ecsv``): a JSON object
or an ECSV table when the file name says so and the size allows, letters otherwise.

A :class:`Provenance` says how the file was made, as the archive's pipelines write it
into the primary header: ``DATE``, ``CAL_VER`` and reference-file keywords
(``BIASFILE``/``FLATFILE`` for HST, ``CRDS_CTX``/``R_FLAT`` for JWST). Without one
(``None``), a body is exactly what the emulator always served. Its ``generation``
counts reprocessings: each generation has data of its own (another pattern), a new
``DATE`` and new reference files, and valid checksums again, at the same size.

The data repeat a pseudo-random pattern of :data:`PATTERN_LENGTH` bytes, a prime, so
the pattern never lines up with FITS blocks or power-of-two chunk sizes: a body
shifted by any number of bytes no longer compares equal.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

import numpy as np

from hstsync.emulator.quirks import BodyStyle

BLOCK = 2880
#: A prime: not a multiple of 2880, nor of any power of two.
PATTERN_LENGTH = 65521
#: Bytes of one "super period": the pattern repeated until it realigns with 32-bit words.
_WORD_PERIOD = 4 * PATTERN_LENGTH
#: The longest slice served from the pre-tiled buffer in one copy.
_TILE_SPAN = 1 << 20
ORIGIN = "hstsync MAST emulator"
_EXCLUDE = frozenset([*range(0x3A, 0x41), *range(0x5B, 0x61)])


def is_fits_size(size: int) -> bool:
    """Whether a body of ``size`` bytes is laid out as a FITS file."""
    return size >= 2 * BLOCK and size % BLOCK == 0


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


def _card(key: str, value: str) -> bytes:
    return f"{key:<8}= {value}".ljust(80)[:80].encode("ascii")


def _int(value: int) -> str:
    return f"{value:>20}"


def _str(value: str) -> str:
    text = value.replace("'", "''")[:66]
    return f"'{text:<8}'"


def _filename(data_uri: str) -> str:
    name = PurePosixPath(data_uri.split(":", 1)[-1]).name or data_uri
    return "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in name)


#: text alphabets: a JSON string's (no quote, backslash or control character) and an
#: ECSV column's (no space: one value a line)
_JSON_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789 "
_ECSV_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
_PLAIN_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"


def _translation(alphabet: bytes) -> bytes:
    return bytes(alphabet[i % len(alphabet)] for i in range(256))


@dataclass(frozen=True, slots=True)
class Provenance:
    """How a file was made, as the primary header of a FITS body says.

    ``generation`` counts reprocessings (0: as first archived): each has data of its
    own, a later ``DATE`` and other reference files. ``cal_ver`` is the calibration
    software's version (``CAL_VER``). ``mission`` picks the reference-file keywords:
    ``BIASFILE``/``FLATFILE`` (HST) or ``CRDS_CTX``/``R_FLAT`` (JWST).
    """

    generation: int = 0
    cal_ver: str = ""
    mission: str = "HST"

    def cards(self, data_uri: str) -> list[bytes]:
        """``DATE``, ``CAL_VER`` and the reference files, deterministic in the
        generation (and, for the time of day, the dataURI)."""
        seconds = int.from_bytes(hashlib.sha256(data_uri.encode()).digest()[:4]) % 86400
        jwst = self.mission.upper() == "JWST"
        base = datetime(2022, 12, 20, tzinfo=UTC) if jwst else datetime(2018, 5, 1, tzinfo=UTC)
        when = base + timedelta(days=91 * self.generation, seconds=seconds)
        cards = [
            _card("DATE", _str(when.strftime("%Y-%m-%dT%H:%M:%S.000"))),
            _card("CAL_VER", _str(self.cal_ver)),
        ]
        if jwst:
            cards += [
                _card("CRDS_CTX", _str(f"jwst_{1100 + 7 * self.generation}.pmap")),
                _card("R_FLAT", _str(f"crds://jwst_nircam_flat_{312 + self.generation:04d}.fits")),
            ]
        else:
            ref = hashlib.sha256(f"reference files {self.generation}".encode()).hexdigest()
            cards += [
                _card("BIASFILE", _str(f"oref${ref[:9]}_bia.fits")),
                _card("FLATFILE", _str(f"oref${ref[9:18]}_pfl.fits")),
            ]
        return cards


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


@dataclass(frozen=True, slots=True)
class Body:
    """The bytes of one product at one size."""

    data_uri: str
    size: int
    header: bytes
    pattern: Pattern
    #: the last bytes of the file (a JPEG's EOI marker), over the pattern
    trailer: bytes = b""

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``offset`` .. ``offset+length`` (past ``size`` the data continue)."""
        start, want = offset, length
        head = b""
        if offset < len(self.header):
            head = self.header[offset : offset + length]
            length -= len(head)
            offset += len(head)
        if length <= 0:
            return head
        tail = self.pattern.read(offset - len(self.header), length)
        data = head + tail if head else tail
        at = self.size - len(self.trailer)
        if self.trailer and start < self.size and start + want > at:
            patched = bytearray(data)
            for i in range(max(start, at), min(start + want, self.size)):
                patched[i - start] = self.trailer[i - at]
            data = bytes(patched)
        return data

    def all(self) -> bytes:
        return self.read(0, self.size)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: signature, IHDR chunk, IDAT's length and type, its CRC, IEND chunk
_PNG_OVERHEAD = 8 + 25 + 8 + 4 + 12
#: the largest PNG body made (its IDAT's CRC is taken over the whole body at once)
_PNG_LARGEST = 64 << 20


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _png_framing(pattern: Pattern, size: int) -> tuple[bytes, bytes]:
    """(head, trailer) of a PNG of ``size`` bytes whose one IDAT chunk holds the pattern:
    the signature, IHDR (a 1-pixel-high grey image as wide as the data), IDAT's length
    and type; then IDAT's CRC and the IEND chunk."""
    n = size - _PNG_OVERHEAD
    ihdr = _png_chunk(
        b"IHDR",
        (max(n - 1, 1)).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x08\x00\x00\x00\x00",
    )
    head = _PNG_SIGNATURE + ihdr + n.to_bytes(4, "big") + b"IDAT"
    # the body's bytes at the IDAT's place are the pattern's, from offset len(head)
    data = pattern.read(0, n)
    crc = zlib.crc32(b"IDAT" + data).to_bytes(4, "big")
    return head, crc + _png_chunk(b"IEND", b"")


#: SOI, then an APP0 segment naming JFIF 1.1 (no thumbnail)
#: SOI, a JFIF APP0 segment, and the header of a scan (SOS: one component): what follows
#: is entropy-coded data, which holds no 0xFF byte here, then EOI. A real JPEG's frame
#: and tables are left out: the file is framed as a JPEG, not decodable as an image.
_JPEG_HEAD = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
)
#: entropy-coded bytes: any but 0xFF (which would start a marker)
_JPEG_DATA = bytes(range(255))
_JPEG_EOI = b"\xff\xd9"


def _primary_cards(data_uri: str, size: int, provenance: Provenance | None = None) -> list[bytes]:
    """The cards every emulator FITS file starts with: one 8-bit data array after a
    one-block header, where it came from, and how it was made (when known)."""
    return [
        _card("SIMPLE", f"{'T':>20}"),
        _card("BITPIX", _int(8)),
        _card("NAXIS", _int(1)),
        _card("NAXIS1", _int(size - BLOCK)),
        _card("ORIGIN", _str(ORIGIN)),
        _card("FILENAME", _str(_filename(data_uri))),
        *(provenance.cards(data_uri) if provenance is not None else []),
    ]


def _plain_header(data_uri: str, size: int, provenance: Provenance | None = None) -> bytes:
    """A FITS primary header without checksum cards."""
    raw = b"".join(
        [
            *_primary_cards(data_uri, size, provenance),
            b"END".ljust(80),
        ]
    )
    return raw.ljust(BLOCK, b" ")


def _odd_header(data_uri: str, size: int, provenance: Provenance | None = None) -> bytes:
    """A header as old archive software wrote them: astropy reads it, with warnings."""
    long_text = (
        "Calibrated with an old pipeline release whose notes run on for longer than "
        "one card can hold, so the value continues over CONTINUE cards, as HST "
        "headers of that era do"
    )
    pieces = [long_text[i : i + 60] for i in range(0, len(long_text), 60)]
    continued = [f"HISTNOTE= '{pieces[0]}&'".ljust(80).encode("ascii")]
    for piece in pieces[1:-1]:
        continued.append(f"CONTINUE  '{piece}&'".ljust(80).encode("ascii"))
    continued.append(f"CONTINUE  '{pieces[-1]}'".ljust(80).encode("ascii"))
    raw = b"".join(
        [
            *_primary_cards(data_uri, size, provenance),
            # non-standard: a lower-case keyword, no space before a comment's slash
            b"date-obs= '2010-10-27'".ljust(80),
            b"EXPTIME =                 339.0/no space before the slash".ljust(80),
            *continued,
            b"END".ljust(80),
        ]
    )
    # NUL padding after END: "Header block contains null bytes instead of spaces"
    return raw.ljust(BLOCK, b"\0")


def _header(
    data_uri: str, size: int, pattern: Pattern, provenance: Provenance | None = None
) -> bytes:
    datasum = pattern.datasum(size - BLOCK)

    def cards(checksum: str) -> bytes:
        raw = b"".join(
            [
                *_primary_cards(data_uri, size, provenance),
                _card("CHECKSUM", _str(checksum)),
                _card("DATASUM", _str(str(datasum))),
                b"END".ljust(80),
            ]
        )
        return raw.ljust(BLOCK, b" ")

    blank = cards("0" * 16)
    total = fold32(word_sum(blank) + datasum)
    return cards(encode_checksum(~total & 0xFFFFFFFF))


def _text_framing(data_uri: str) -> tuple[bytes, bytes, bytes]:
    """(head, alphabet, trailer) of a text body: a JSON object for ``.json``, an ECSV
    table of one string column for ``.ecsv``, plain letters otherwise."""
    name = _filename(data_uri)
    if name.endswith(".json"):
        pool = name.replace('"', "")
        head = f'{{"asn_rule": "emulator", "asn_pool": "{pool}", "comment": "'.encode()
        return head, _JSON_TEXT, b'"}\n'
    if name.endswith(".ecsv"):
        head = (
            b"# %ECSV 1.0\n# ---\n# datatype:\n# - {name: label, datatype: string}\n"
            b"# schema: astropy-2.0\nlabel\nx"
        )
        return head, _ECSV_TEXT, b"\n"
    return b"", _PLAIN_TEXT, b""


class Bodies:
    """A cache of bodies; computing a pattern and a header costs a few milliseconds."""

    def __init__(self, capacity: int = 32) -> None:
        self._capacity = capacity
        self._patterns: OrderedDict[tuple[str, int, bytes], Pattern] = OrderedDict()
        self._headers: dict[tuple[str, int, Provenance | None], bytes] = {}
        self._lock = threading.Lock()

    def _pattern(self, data_uri: str, generation: int, alphabet: bytes = b"") -> Pattern:
        key = (data_uri, generation, alphabet)
        pattern = self._patterns.get(key)
        if pattern is None:
            pattern = Pattern(data_uri, generation, alphabet)
            self._patterns[key] = pattern
            while len(self._patterns) > self._capacity:
                old, _ = self._patterns.popitem(last=False)
                for k in [k for k in self._headers if k[0] == old[0]]:
                    del self._headers[k]
        else:
            self._patterns.move_to_end(key)
        return pattern

    def get(
        self,
        data_uri: str,
        size: int,
        style: BodyStyle = BodyStyle.FITS,
        provenance: Provenance | None = None,
    ) -> Body:
        """The body of ``data_uri`` at ``size`` in ``style``; ``provenance`` None is
        the emulator's original body, else the header says how (and which generation)
        the file was made."""
        generation = provenance.generation if provenance is not None else 0
        with self._lock:
            if style is BodyStyle.TEXT:
                head, alphabet, trailer = _text_framing(data_uri)
                pattern = self._pattern(data_uri, generation, alphabet)
                if size < len(head) + len(trailer):
                    return Body(data_uri, size, b"", pattern)
                return Body(data_uri, size, head, pattern, trailer)
            if style is BodyStyle.JPEG:
                pattern = self._pattern(data_uri, generation, _JPEG_DATA)
                if size < len(_JPEG_HEAD) + len(_JPEG_EOI):
                    return Body(data_uri, size, b"", pattern)
                return Body(data_uri, size, _JPEG_HEAD, pattern, _JPEG_EOI)
            pattern = self._pattern(data_uri, generation)
            if style is BodyStyle.PNG and _PNG_OVERHEAD <= size <= _PNG_LARGEST:
                head, trailer = _png_framing(pattern, size)
                return Body(data_uri, size, head, pattern, trailer)
            if not is_fits_size(size):
                return Body(data_uri, size, b"", pattern)
            if style is BodyStyle.FITS_NO_CHECKSUM:
                return Body(data_uri, size, _plain_header(data_uri, size, provenance), pattern)
            if style is BodyStyle.FITS_ODD_HEADER:
                return Body(data_uri, size, _odd_header(data_uri, size, provenance), pattern)
            header = self._headers.get((data_uri, size, provenance), b"")
            if not header:
                header = _header(data_uri, size, pattern, provenance)
                self._headers[(data_uri, size, provenance)] = header
        return Body(data_uri, size, header, pattern)
