"""The primary header of a FITS body: its cards, how the file was made, its checksums.

Owns the 2880-byte block a FITS body starts with: the cards every emulator file has
(BITPIX=8, NAXIS=1, NAXIS1=size-2880, ORIGIN, FILENAME), the cards a
:class:`Provenance` adds (``DATE``, ``CAL_VER``, reference files), and the three
headers the body styles use: with valid ``DATASUM`` and ``CHECKSUM`` cards
(:func:`checksummed_header`), without them (:func:`plain_header`), and as old
archive software wrote them, which astropy reads with warnings (:func:`odd_header`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from hstsync.emulator.fits.checksum import encode_checksum, fold32, word_sum
from hstsync.emulator.fits.pattern import Pattern

BLOCK = 2880
ORIGIN = "hstsync MAST emulator"


def is_fits_size(size: int) -> bool:
    """Whether a body of ``size`` bytes is laid out as a FITS file."""
    return size >= 2 * BLOCK and size % BLOCK == 0


def _card(key: str, value: str) -> bytes:
    return f"{key:<8}= {value}".ljust(80)[:80].encode("ascii")


def _int(value: int) -> str:
    return f"{value:>20}"


def _str(value: str) -> str:
    text = value.replace("'", "''")[:66]
    return f"'{text:<8}'"


def file_name(data_uri: str) -> str:
    """The file name a dataURI ends in, every byte outside printable ASCII made ``_``."""
    name = PurePosixPath(data_uri.split(":", 1)[-1]).name or data_uri
    return "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in name)


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


def _primary_cards(data_uri: str, size: int, provenance: Provenance | None = None) -> list[bytes]:
    """The cards every emulator FITS file starts with: one 8-bit data array after a
    one-block header, where it came from, and how it was made (when known)."""
    return [
        _card("SIMPLE", f"{'T':>20}"),
        _card("BITPIX", _int(8)),
        _card("NAXIS", _int(1)),
        _card("NAXIS1", _int(size - BLOCK)),
        _card("ORIGIN", _str(ORIGIN)),
        _card("FILENAME", _str(file_name(data_uri))),
        *(provenance.cards(data_uri) if provenance is not None else []),
    ]


def plain_header(data_uri: str, size: int, provenance: Provenance | None = None) -> bytes:
    """A FITS primary header without checksum cards."""
    raw = b"".join(
        [
            *_primary_cards(data_uri, size, provenance),
            b"END".ljust(80),
        ]
    )
    return raw.ljust(BLOCK, b" ")


def odd_header(data_uri: str, size: int, provenance: Provenance | None = None) -> bytes:
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


def checksummed_header(
    data_uri: str, size: int, pattern: Pattern, provenance: Provenance | None = None
) -> bytes:
    """A FITS primary header whose ``DATASUM`` sums ``pattern``'s data and whose
    ``CHECKSUM`` makes the whole file's ones' complement sum all ones (it checks)."""
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
