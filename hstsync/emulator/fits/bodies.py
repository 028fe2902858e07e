"""A product's body and the cache that makes them: header, data and trailer as one file.

Owns putting the pieces together: a :class:`Body` reads any byte range across its
head (a FITS header or another format's framing), the endless data and the trailer
laid over its last bytes; :class:`Bodies` picks the pieces for a body style and a
size, and keeps the patterns and checksummed headers it made (each costs a few
milliseconds), a bounded number of patterns at a time, for every server thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from hstsync.emulator.fits.framing import (
    JPEG_DATA,
    JPEG_EOI,
    JPEG_HEAD,
    PNG_LARGEST,
    PNG_OVERHEAD,
    png_framing,
    text_framing,
)
from hstsync.emulator.fits.header import (
    Provenance,
    checksummed_header,
    is_fits_size,
    odd_header,
    plain_header,
)
from hstsync.emulator.fits.pattern import Pattern
from hstsync.emulator.quirks import BodyStyle


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
                head, alphabet, trailer = text_framing(data_uri)
                pattern = self._pattern(data_uri, generation, alphabet)
                if size < len(head) + len(trailer):
                    return Body(data_uri, size, b"", pattern)
                return Body(data_uri, size, head, pattern, trailer)
            if style is BodyStyle.JPEG:
                pattern = self._pattern(data_uri, generation, JPEG_DATA)
                if size < len(JPEG_HEAD) + len(JPEG_EOI):
                    return Body(data_uri, size, b"", pattern)
                return Body(data_uri, size, JPEG_HEAD, pattern, JPEG_EOI)
            pattern = self._pattern(data_uri, generation)
            if style is BodyStyle.PNG and PNG_OVERHEAD <= size <= PNG_LARGEST:
                head, trailer = png_framing(pattern, size)
                return Body(data_uri, size, head, pattern, trailer)
            if not is_fits_size(size):
                return Body(data_uri, size, b"", pattern)
            if style is BodyStyle.FITS_NO_CHECKSUM:
                return Body(data_uri, size, plain_header(data_uri, size, provenance), pattern)
            if style is BodyStyle.FITS_ODD_HEADER:
                return Body(data_uri, size, odd_header(data_uri, size, provenance), pattern)
            header = self._headers.get((data_uri, size, provenance), b"")
            if not header:
                header = checksummed_header(data_uri, size, pattern, provenance)
                self._headers[(data_uri, size, provenance)] = header
        return Body(data_uri, size, header, pattern)
