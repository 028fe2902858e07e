"""The end checks of preview images: JPEG and PNG."""

from __future__ import annotations

import zlib

from hstsync.formats.verdict import WHOLE, Verdict, cut_short

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
        return cut_short("JPEG", "its end-of-image marker")


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
        return cut_short("PNG", "its IEND chunk")
