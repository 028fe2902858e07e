"""The end checks of documents: JSON (JWST's association files) and PDF."""

from __future__ import annotations

import json

from hstsync.formats.verdict import WHOLE, Verdict, cut_short

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
            return cut_short("PDF", "its %%EOF marker")
        return WHOLE


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
