"""Whether a file is whole by its own format: the end checks for files without checksums.

A FITS file carries its own sums (``transfer/verify.py``); previews and packed files do
not, and one cut short at the size a server promised would otherwise pass. Each format
here has an end a file cut short cannot have, and checks that are cheap:

- JPEG (``.jpg``, ``.jpeg``): the start-of-image marker, then segment by segment (their
  lengths are skipped, so a thumbnail's own end marker inside EXIF data is never taken
  for the file's) through the entropy-coded scans to the end-of-image marker. Bytes
  after it are ignored, as decoders ignore them.
- PNG (``.png``): the signature, every chunk's CRC, and ``IEND`` last.
- gzip (``.gz``, ``.tgz``): every member decompressed, its CRC-32 and length (ISIZE)
  checked by zlib; members may follow each other; zero padding after the last is
  ignored, as ``gzip -d`` ignores it.
- bzip2 (``.bz2``) and xz (``.xz``): each stream to its end marker and its own checks.
- JSON (``.json``, e.g. JWST's ``_asn.json``): an object or array that parses.
- PDF (``.pdf``): ``%PDF-`` at the start, ``%%EOF`` in the last kilobyte.

Pure: a check is fed the file's bytes in pieces of any size (as they stream, or as
they are read back) and then says its :class:`Verdict`; nothing here opens a file.
:func:`end_check` gives the check for a file name, or None when its format has none:
such a file can only be judged by its size.
"""

from __future__ import annotations

from collections.abc import Callable

from hstsync.formats.documents import JSON_LIMIT, JsonEnd, PdfEnd
from hstsync.formats.images import JpegEnd, PngEnd
from hstsync.formats.packed import bzip2_end, gzip_end, xz_end
from hstsync.formats.verdict import EndCheck, Verdict

__all__ = ["JSON_LIMIT", "EndCheck", "Verdict", "end_check", "verdict"]


def end_check(filename: str) -> EndCheck | None:
    """A new check for a file of this name (by its suffix, any case), or None."""
    lower = filename.lower()
    for suffixes, make in _CHECKS:
        if lower.endswith(suffixes):
            return make()
    return None


def verdict(filename: str, data: bytes | bytearray | memoryview) -> Verdict:
    """The verdict on a whole file's bytes at once."""
    check = end_check(filename)
    if check is None:
        return Verdict(None, "this format has no end to check")
    check.feed(data)
    return check.finish()


_CHECKS: tuple[tuple[tuple[str, ...], Callable[[], EndCheck]], ...] = (
    ((".jpg", ".jpeg"), JpegEnd),
    ((".png",), PngEnd),
    ((".gz", ".tgz"), gzip_end),
    ((".bz2",), bzip2_end),
    ((".xz",), xz_end),
    ((".json",), JsonEnd),
    ((".pdf",), PdfEnd),
)
