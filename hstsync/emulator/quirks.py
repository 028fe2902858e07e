"""The real archive's habits, as switches: what MAST does that no fault injects.

Owns the *vocabulary* of quirks; the catalogue stores them and the server acts on
them. Faults (:mod:`hstsync.emulator.faults`) are things going wrong, counted down
per request; quirks are how the archive always behaves for some program or file.
``docs/emulator.md`` has the table: switch, what the real archive does, evidence.

Portal quirks (:class:`PortalQuirks`) apply to every reply when given to
``Emulator(quirks=...)``, and to the replies that touch a program when given to
:meth:`Catalogue.set_portal_quirks` (the two are merged, the stricter wins):

- ``executing_rounds`` — each distinct query (service, params, page) is answered
  ``{"status": "EXECUTING"}`` that many times before its result, the first time it
  is asked; astroquery posts it again until COMPLETE.
- ``page_rows`` — the server's own page size: a reply holds at most this many rows
  whatever ``pagesize`` asked for, and ``paging.pagesFiltered`` says how many pages
  there are; astroquery asks for each following page.
- ``size_types`` — how the ``fields`` declaration types the products' ``size``
  column: ``"int"`` (as recorded), ``"float"`` or ``"string"``; a tuple is cycled
  page by page (page 1 the first). astroquery turns a declared float into a float64
  column (a null there is NaN, not masked) and a declared string into a str column.
  Mixing ``"string"`` with a number type across the pages of one query makes
  astroquery's ``vstack`` fail: that is a permanent failure, not a quirk to combine.
- ``latency_per_obsid`` — a ``Mast.Caom.Products`` request waits this many seconds
  for each obsid it names before answering (batch size makes the portal slow).
- ``max_obsids_per_call`` — a ``Mast.Caom.Products`` request naming more obsids than
  this fails, as whole-proposal JWST product lists time out (astroquery#2507):
  ``too_many_obsids="error"`` answers ``{"status": "ERROR"}`` (after the latency),
  ``"hang"`` accepts it and never answers (until the emulator closes).

Product quirks are fields of :class:`~hstsync.emulator.catalogue.CatalogueProduct`
(keywords of :meth:`Catalogue.add_product`):

- ``cells`` — catalogue cells that differ from the truth: ``{"size": None}`` (a
  null cell, masked in astroquery's table), ``{"size": 1234.0}`` or ``"1234"`` (the
  value's JSON type), ``{"size": N}`` with N not what is served (a wrong catalogue
  size), ``{"dataRights": None}``, ``{"description": None}``, ``{"obs_id": None}``,
  ``{"parent_obsid": "0"}``. The server still serves the true file and rights.
- ``product_obs_id`` (``add_product``) — the row's ``obs_id`` differs from its
  observation's (``j8vg01021_drz.fits`` under ``j8vg01020``).
- :meth:`Catalogue.list_under` — the same product listed again under another
  observation (HAP and association rows list their members' files).
- ``chunked`` — served without ``Content-Length`` (chunked transfer encoding), HEAD
  included: files generated on demand.
- ``ranges=False`` — ``Range`` is ignored (200 and the whole body), and no
  ``Accept-Ranges`` header is sent.
- ``style`` — the body's kind, a :class:`BodyStyle`.
- ``cloud=False`` — the public bucket holds no copy (its key is None, the bucket 404s).
- ``redirect`` — ``Download/file`` answers 302 to the emulator's second listener
  (``Emulator.cdn_url``: another host name and port) which serves the bytes.
- ``validators=False`` — served without ETag and Last-Modified; conditional headers
  are ignored and an If-Range never matches (``Emulator(validators=False)`` for
  every file).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SIZE_TYPES = ("int", "float", "string")
#: how a product lookup naming too many obsids fails
TOO_MANY_OBSIDS = ("error", "hang")


class BodyStyle(StrEnum):
    """What a product's bytes look like (all deterministic in ``(dataURI, size)``)."""

    #: FITS with valid CHECKSUM/DATASUM when the size allows it (a multiple of 2880,
    #: at least 5760), else the data pattern alone: the emulator's original bodies
    FITS = "fits"
    #: FITS without CHECKSUM/DATASUM cards (most older archive files)
    FITS_NO_CHECKSUM = "fits_no_checksum"
    #: FITS whose header astropy warns about but reads: NUL padding after END,
    #: non-standard cards (a lower-case keyword, a value without a space before its
    #: comment slash), a long string in CONTINUE cards; no checksum cards
    FITS_ODD_HEADER = "fits_odd_header"
    #: a JPEG-framed preview (SOI, a JFIF APP0 segment, a scan, EOI): not FITS at all
    JPEG = "jpeg"
    #: a PNG preview (signature, IHDR, one IDAT chunk of pattern bytes, IEND, every CRC
    #: right): framed as a PNG so that its end can be checked, not a decodable image
    PNG = "png"
    #: plain text of the listed size: a JSON object (``.json``, the JWST pipeline's
    #: association files), an ECSV table (``.ecsv``, its source catalogues), letters
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class PortalQuirks:
    """How slow and how paged the portal is, and how it types ``size`` (see above)."""

    executing_rounds: int = 0
    page_rows: int | None = None
    size_types: tuple[str, ...] = ("int",)
    latency_per_obsid: float = 0.0
    max_obsids_per_call: int | None = None
    too_many_obsids: str = "error"

    def __post_init__(self) -> None:
        if self.executing_rounds < 0 or self.latency_per_obsid < 0:
            raise ValueError("executing_rounds and latency_per_obsid must not be negative")
        if self.page_rows is not None and self.page_rows < 1:
            raise ValueError("page_rows must be at least 1")
        if self.max_obsids_per_call is not None and self.max_obsids_per_call < 1:
            raise ValueError("max_obsids_per_call must be at least 1")
        if self.too_many_obsids not in TOO_MANY_OBSIDS:
            raise ValueError(f"too_many_obsids must be one of {', '.join(TOO_MANY_OBSIDS)}")
        if not self.size_types or any(t not in SIZE_TYPES for t in self.size_types):
            raise ValueError(f"size_types must name some of {', '.join(SIZE_TYPES)}")

    def merged(self, other: PortalQuirks) -> PortalQuirks:
        """Both at once: more rounds, smaller pages, more latency, fewer obsids (a hang
        rather than an error); ``other``'s size types when they are not the plain
        default."""
        pages = [p for p in (self.page_rows, other.page_rows) if p is not None]
        limits = [n for n in (self.max_obsids_per_call, other.max_obsids_per_call) if n]
        hang = "hang" in (self.too_many_obsids, other.too_many_obsids)
        return PortalQuirks(
            executing_rounds=max(self.executing_rounds, other.executing_rounds),
            page_rows=min(pages) if pages else None,
            size_types=other.size_types if other.size_types != ("int",) else self.size_types,
            latency_per_obsid=max(self.latency_per_obsid, other.latency_per_obsid),
            max_obsids_per_call=min(limits) if limits else None,
            too_many_obsids="hang" if hang else "error",
        )

    def size_type(self, page: int) -> str:
        return self.size_types[(page - 1) % len(self.size_types)]
