"""A FITS file's primary header, read from the file's first bytes: pure.

A reprocessing of an archive file rewrites its primary header (``DATE``, ``CAL_VER``,
the reference-file keywords, ``CHECKSUM``), so comparing the header of the archive's
copy with ours tells whether the file changed, from the head of the file alone.
:func:`primary_header` finds where the header ends (its ``END`` card, padded to a 2880
byte block); :func:`keywords` reads a few of its values for people (what changed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hstsync.transfer.fits import BLOCK, end_card

CARD = 80
#: what a reprocessing shows in the primary header, for the hook and status
TELLING = ("DATE", "CAL_VER", "CAL_SVER", "OPUS_VER", "PRVVERSION")

_VALUE = re.compile(rb"= *(?:'((?:[^']|'')*)'|([^/]*?)) *(?:/.*)?$")


def primary_header(data: bytes) -> bytes | None:
    """The primary header at the start of ``data`` (whole blocks, up to the one holding
    ``END``), or None when ``data`` does not start with a FITS header that ends in it."""
    if not data.startswith(b"SIMPLE  ="):
        return None
    for start in range(0, len(data) - BLOCK + 1, BLOCK):
        if end_card(data[start : start + BLOCK]) >= 0:
            return data[: start + BLOCK]
    return None


def keywords(header: bytes, names: Iterable[str] = TELLING) -> dict[str, str]:
    """The values of ``names`` in ``header`` that it holds (strings unquoted)."""
    wanted = {name.encode().ljust(8): name for name in names}
    found: dict[str, str] = {}
    for start in range(0, len(header) - CARD + 1, CARD):
        card = header[start : start + CARD]
        name = wanted.get(card[:8])
        if name is None or name in found:
            continue
        match = _VALUE.match(card[8:].rstrip())
        if match is not None:
            value = match.group(1) if match.group(1) is not None else match.group(2)
            found[name] = value.replace(b"''", b"'").decode("ascii", "replace").strip()
    return found
