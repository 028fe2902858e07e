"""The end check of compressed files: gzip members, bzip2 and xz streams."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Protocol

from hstsync.formats.verdict import STEP, WHOLE, Verdict, cut_short

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
                self._stream.decompress(data, STEP)
                while not self._stream.eof and not self._stream.needs_input:
                    self._stream.decompress(b"", STEP)
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
            return cut_short(self.name, f"the end of its last {last}")
        if self._between.strip(b"\x00"):
            return Verdict(True, f"{len(self._between)} bytes after the last stream, ignored")
        return WHOLE


def _damaged(name: str, before: int, exc: Exception) -> str:
    where = f"member {before + 1}" if name == "gzip" else f"stream {before + 1}"
    return f"damaged {name} data in {where} ({exc})"


def gzip_end() -> StreamEnd:
    return StreamEnd("gzip", _Gzip, b"\x1f\x8b")


def bzip2_end() -> StreamEnd:
    return StreamEnd("bzip2", bz2.BZ2Decompressor, b"BZh")


def xz_end() -> StreamEnd:
    return StreamEnd("xz", lzma.LZMADecompressor, b"\xfd7zXZ\x00")
