"""Text from outside made safe to show: the one rule for terminals, log lines and tables.

Archive messages, catalogue cells, server headers and file names are data. Written raw,
an escape sequence in a portal's error retitles a terminal or clears it, a newline
forges a whole log line, and a file name that is not UTF-8 (``os.fsdecode`` turns its
bytes into lone surrogates) cannot be encoded at all. :func:`printable` writes every
such character as a visible escape; every path to a person goes through it: ``status``
and ``plan`` tables, the CLI's error lines, each log record (the CLI's log formatter),
notes beside set-aside manifests, and the ``last_error`` of archive messages.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that is not printable written as an escape.

    Control characters (C0, DEL, C1: ESC is ``\\x1b``, a newline ``\\n``), the other
    code points Python does not call printable (bidirectional overrides, line and
    paragraph separators: ``\\u202e``) and the undecodable bytes of a file name
    (``\\xff``) are escaped; everything else, accents and all, is kept. Pure, and cheap
    for text that needs nothing (one ``isprintable`` test).
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
