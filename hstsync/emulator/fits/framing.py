"""The bytes around the data of bodies that are not FITS: PNG, JPEG and text.

Owns how a body of another format is framed about the same endless data
(:class:`~hstsync.emulator.fits.pattern.Pattern`): what comes before it (the head),
which bytes the data may hold (an alphabet), and what ends the file (the trailer,
laid over the data's last bytes). A PNG holds the data in one IDAT chunk; a JPEG is
SOI, a JFIF APP0, a scan of data with no 0xFF byte, and EOI; a text body is a JSON
object for ``.json``, an ECSV table for ``.ecsv`` (the JWST pipeline's ``_asn.json``
and ``_cat.ecsv``), plain letters otherwise.
"""

from __future__ import annotations

import zlib

from hstsync.emulator.fits.header import file_name
from hstsync.emulator.fits.pattern import Pattern

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: signature, IHDR chunk, IDAT's length and type, its CRC, IEND chunk
PNG_OVERHEAD = 8 + 25 + 8 + 4 + 12
#: the largest PNG body made (its IDAT's CRC is taken over the whole body at once)
PNG_LARGEST = 64 << 20


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_framing(pattern: Pattern, size: int) -> tuple[bytes, bytes]:
    """(head, trailer) of a PNG of ``size`` bytes whose one IDAT chunk holds the pattern:
    the signature, IHDR (a 1-pixel-high grey image as wide as the data), IDAT's length
    and type; then IDAT's CRC and the IEND chunk."""
    n = size - PNG_OVERHEAD
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
JPEG_HEAD = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
)
#: entropy-coded bytes: any but 0xFF (which would start a marker)
JPEG_DATA = bytes(range(255))
JPEG_EOI = b"\xff\xd9"

#: text alphabets: a JSON string's (no quote, backslash or control character) and an
#: ECSV column's (no space: one value a line)
_JSON_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789 "
_ECSV_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789\n"
_PLAIN_TEXT = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"


def text_framing(data_uri: str) -> tuple[bytes, bytes, bytes]:
    """(head, alphabet, trailer) of a text body: a JSON object for ``.json``, an ECSV
    table of one string column for ``.ecsv``, plain letters otherwise."""
    name = file_name(data_uri)
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
