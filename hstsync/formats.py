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

import bz2
import json
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: decompressed bytes produced per step (and dropped): bounds the memory a check uses
_STEP = 1 << 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a file's format says about its bytes.

    ``whole`` is True when the format's end is there and its checks pass, False when
    the file is cut short, damaged or not of its format at all (``reason`` says which),
    None when the format cannot tell (``reason`` says why).
    """

    whole: bool | None
    reason: str = ""


WHOLE = Verdict(True)


class EndCheck(Protocol):
    """A format's end check: :meth:`feed` the bytes in order, then :meth:`finish`."""

    #: the format's name, for messages ("JPEG")
    name: str

    def feed(self, data: bytes | bytearray | memoryview) -> None: ...

    def finish(self) -> Verdict: ...


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


def _cut(name: str, what: str) -> Verdict:
    return Verdict(False, f"cut short: the {name} data ends before {what}")


# -- JPEG --------------------------------------------------------------------------------

_START, _MARKER, _ENTROPY, _DONE = range(4)


class JpegEnd:
    """A JPEG file's markers, from start-of-image to end-of-image."""

    name = "JPEG"

    def __init__(self) -> None:
        self._state = _START
        self._pending = b""  # the unread start of a marker and its length
        self._skip = 0  # bytes of a segment's body still to pass over
        self._after_skip = _MARKER
        self._problem: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._state == _DONE or self._problem is not None:
            return
        data = bytes(data)
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
            if self._skip:
                return
            self._state = self._after_skip
        buf = self._pending + data
        self._pending = b""
        pos = self._scan(buf)
        if self._state != _DONE and self._problem is None:
            self._pending = buf[pos:]

    def _scan(self, buf: bytes) -> int:
        """Read ``buf`` from its start; the position of the first byte still needed."""
        pos = 0
        while pos < len(buf):
            if self._state == _START:
                if len(buf) - pos < 2:
                    return pos
                if buf[pos : pos + 2] != b"\xff\xd8":
                    self._problem = "not a JPEG file (no start-of-image marker)"
                    return len(buf)
                pos += 2
                self._state = _MARKER
            elif self._state == _MARKER:
                if buf[pos] != 0xFF:
                    self._problem = "damaged JPEG data (a byte where a marker must be)"
                    return len(buf)
                code_at = pos + 1
                while code_at < len(buf) and buf[code_at] == 0xFF:  # fill bytes
                    code_at += 1
                if code_at >= len(buf):
                    return code_at - 1  # keep one 0xFF
                code = buf[code_at]
                if code == 0xD9:
                    self._state = _DONE
                    return len(buf)
                if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a segment
                    pos = code_at + 1
                    continue
                if code in (0x00, 0xD8):
                    self._problem = f"damaged JPEG data (marker FF{code:02X} out of place)"
                    return len(buf)
                if len(buf) - code_at < 3:
                    return code_at - 1  # the marker and its length come together
                length = (buf[code_at + 1] << 8) | buf[code_at + 2]
                if length < 2:
                    self._problem = "damaged JPEG data (a segment shorter than its length)"
                    return len(buf)
                pos = code_at + 3
                self._after_skip = _ENTROPY if code == 0xDA else _MARKER  # start of scan
                body = length - 2
                if len(buf) - pos < body:
                    self._skip = body - (len(buf) - pos)
                    return len(buf)
                pos += body
                self._state = self._after_skip
            else:  # entropy-coded data: a 0xFF is stuffed (FF00), a restart, or a marker
                found = buf.find(b"\xff", pos)
                if found < 0:
                    return len(buf)
                if found + 1 >= len(buf):
                    return found
                after = buf[found + 1]
                if after == 0x00 or 0xD0 <= after <= 0xD7:
                    pos = found + 2
                elif after == 0xFF:
                    pos = found + 1
                else:
                    pos = found
                    self._state = _MARKER
        return pos

    def finish(self) -> Verdict:
        if self._problem is not None:
            return Verdict(False, self._problem)
        if self._state == _DONE:
            return WHOLE
        if self._state == _START and not self._pending:
            return Verdict(False, "not a JPEG file (empty)")
        return _cut("JPEG", "its end-of-image marker")


# -- PNG ---------------------------------------------------------------------------------

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIG, _HEAD, _BODY, _CRC, _END = range(5)


class PngEnd:
    """A PNG file's chunks: each one's CRC, ``IHDR`` first and ``IEND`` last."""

    name = "PNG"

    def __init__(self) -> None:
        self._state = _SIG
        self._pending = b""
        self._type = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._crc = 0
        self._chunks = 0
        self._problem: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._state == _END or self._problem is not None:
            return
        buf = self._pending + bytes(data)
        pos = 0
        while pos < len(buf) and self._state != _END and self._problem is None:
            if self._state == _BODY:
                taken = min(self._left, len(buf) - pos)
                self._crc = zlib.crc32(buf[pos : pos + taken], self._crc)
                self._left -= taken
                pos += taken
                if not self._left:
                    self._state = _CRC
                continue
            need = {_SIG: 8, _HEAD: 8, _CRC: 4}[self._state]
            if len(buf) - pos < need:
                break
            piece = buf[pos : pos + need]
            pos += need
            if self._state == _SIG:
                if piece != _SIGNATURE:
                    self._problem = "not a PNG file (no PNG signature)"
                self._state = _HEAD
            elif self._state == _HEAD:
                self._start_chunk(piece)
            else:
                self._end_chunk(piece)
        self._pending = buf[pos:] if self._state != _END else b""

    def _start_chunk(self, head: bytes) -> None:
        self._left = int.from_bytes(head[:4], "big")
        self._type = head[4:]
        if self._left > 2**31 - 1 or not self._type.isalpha():
            self._problem = "damaged PNG data (a chunk header that is not one)"
        elif self._chunks == 0 and self._type != b"IHDR":
            self._problem = "not a PNG file (IHDR is not its first chunk)"
        self._crc = zlib.crc32(self._type)
        self._state = _BODY if self._left else _CRC

    def _end_chunk(self, crc: bytes) -> None:
        if int.from_bytes(crc, "big") != self._crc:
            name = self._type.decode("ascii")
            self._problem = f"damaged PNG data (the {name} chunk's CRC does not match)"
            return
        self._chunks += 1
        self._state = _END if self._type == b"IEND" else _HEAD

    def finish(self) -> Verdict:
        if self._problem is not None:
            return Verdict(False, self._problem)
        if self._state == _END:
            return WHOLE
        if self._state == _SIG and not self._pending:
            return Verdict(False, "not a PNG file (empty)")
        return _cut("PNG", "its IEND chunk")


# -- compressed streams --------------------------------------------------------------------


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


class _Gzip:
    """zlib's gzip reader with the interface of bz2's and lzma's decompressors."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._zlib.eof

    @property
    def needs_input(self) -> bool:
        return not self._zlib.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._zlib.unused_data

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        return self._zlib.decompress(data or self._zlib.unconsumed_tail, max(max_length, 0))


class StreamEnd:
    """Compressed streams (gzip members, bzip2 or xz streams), each to its end and its
    own checks (gzip: CRC-32 and length), one after another; zero padding after the
    last is ignored, as ``gzip -d`` ignores it."""

    def __init__(self, name: str, opener: Callable[[], _Decompressor], magic: bytes) -> None:
        self.name = name
        self._open = opener
        self._magic = magic
        self._stream: _Decompressor | None = opener()
        self._between = b""
        self._fed = False
        self._problem: str | None = None
        self._streams = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        self._fed = self._fed or bool(data)
        while data and self._problem is None:
            if self._stream is None:
                self._between += data
                data = b""
                if self._between.startswith(self._magic):
                    self._stream = self._open()
                    data, self._between = self._between, b""
                continue
            try:
                self._stream.decompress(data, _STEP)
                while not self._stream.eof and not self._stream.needs_input:
                    self._stream.decompress(b"", _STEP)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                self._problem = _damaged(self.name, self._streams, exc)
                return
            if not self._stream.eof:
                return
            self._streams += 1
            data = self._stream.unused_data
            self._stream = None

    def finish(self) -> Verdict:
        if self._problem is not None:
            return Verdict(False, self._problem)
        if not self._fed:
            return Verdict(False, f"not a {self.name} file (empty)")
        if self._stream is not None:
            last = "member (its CRC and length)" if self.name == "gzip" else "stream"
            return _cut(self.name, f"the end of its last {last}")
        if self._between.strip(b"\x00"):
            return Verdict(True, f"{len(self._between)} bytes after the last stream, ignored")
        return WHOLE


def _damaged(name: str, before: int, exc: Exception) -> str:
    where = f"member {before + 1}" if name == "gzip" else f"stream {before + 1}"
    return f"damaged {name} data in {where} ({exc})"


# -- JSON and PDF ------------------------------------------------------------------------------

#: the largest JSON file checked; a bigger one's verdict is "cannot tell"
JSON_LIMIT = 16 * 1024 * 1024


class JsonEnd:
    """A JSON document that parses as an object or an array (a cut one never does)."""

    name = "JSON"

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._size += len(data)
        if self._size <= JSON_LIMIT:
            self._chunks.append(bytes(data))

    def finish(self) -> Verdict:
        if self._size > JSON_LIMIT:
            return Verdict(None, f"larger than {JSON_LIMIT // (1024 * 1024)} MiB: not parsed")
        try:
            document = json.loads(b"".join(self._chunks))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return Verdict(False, f"cut short or damaged: not valid JSON ({_first_line(exc)})")
        if isinstance(document, dict | list):
            return WHOLE
        return Verdict(None, "a JSON document that is not an object or array")


class PdfEnd:
    """``%PDF-`` at the start and ``%%EOF`` in the last kilobyte."""

    name = "PDF"
    _TAIL = 1024

    def __init__(self) -> None:
        self._head = b""
        self._tail = b""

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if len(self._head) < 5:
            self._head = (self._head + data)[:5]
        self._tail = (self._tail + data)[-self._TAIL :]

    def finish(self) -> Verdict:
        if self._head != b"%PDF-":
            return Verdict(False, "not a PDF file (no %PDF- header)")
        if b"%%EOF" not in self._tail:
            return _cut("PDF", "its %%EOF marker")
        return WHOLE


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_CHECKS: tuple[tuple[tuple[str, ...], Callable[[], EndCheck]], ...] = (
    ((".jpg", ".jpeg"), JpegEnd),
    ((".png",), PngEnd),
    ((".gz", ".tgz"), lambda: StreamEnd("gzip", _Gzip, b"\x1f\x8b")),
    ((".bz2",), lambda: StreamEnd("bzip2", bz2.BZ2Decompressor, b"BZh")),
    ((".xz",), lambda: StreamEnd("xz", lzma.LZMADecompressor, b"\xfd7zXZ\x00")),
    ((".json",), JsonEnd),
    ((".pdf",), PdfEnd),
)
