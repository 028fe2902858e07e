"""The archive's records: one product (a file) and one CAOM observation, as plain data.

A :class:`CatalogueProduct` carries its real archive habits
(:mod:`hstsync.emulator.quirks`): ``cells`` that differ from the truth and its
serving quirks; and its history: how often it was reprocessed (``generation``, with
the size, style and calibration version of every earlier one) and whether the
archive still lists it (``withdrawn``). :func:`describe` and :func:`subgroup_of`
name a product the way the archive's ``description`` and
``productSubGroupDescription`` columns do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hstsync.emulator.fits import Provenance
from hstsync.emulator.quirks import BodyStyle

PUBLIC = "PUBLIC"
EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"
MRP = "Minimum Recommended Products"
#: Last-Modified of every product nobody has changed (the tutorial's release date).
_EPOCH = 946_684_800.0  # 2000-01-01T00:00:00Z

Row = dict[str, Any]


@dataclass(slots=True)
class CatalogueProduct:
    """One file of the archive. Mutable: tests change sizes and rights of live products."""

    obsid: str
    obs_id: str
    filename: str
    size: int
    product_type: str = "SCIENCE"
    calib_level: int = 2
    data_rights: str = PUBLIC
    description: str = ""
    group: str | None = None
    subgroup: str | None = None
    obs_collection: str = "HST"
    dataproduct_type: str = "image"
    proposal_id: str = ""
    filters: str = ""
    prvversion: str | None = None
    #: bumped on every change; part of the ETag
    version: int = 0
    modified: float = _EPOCH
    #: a dataURI that is not derived from the filename (hostile-catalogue tests)
    uri: str | None = None
    #: catalogue cells that differ from the truth (None: a null cell); see quirks.py
    cells: dict[str, Any] = field(default_factory=dict)
    #: served without Content-Length (chunked transfer encoding)
    chunked: bool = False
    #: False: Range is ignored and no Accept-Ranges is sent
    ranges: bool = True
    style: BodyStyle = BodyStyle.FITS
    #: Download/file answers 302 to the emulator's second listener (``cdn_url``)
    redirect: bool = False
    #: False: the public bucket holds no copy (its ``cloud_key`` is None)
    cloud: bool = True
    #: the bucket key, when the catalogue knows it rather than the HST layout giving
    #: it (the JWST programs set it)
    cloud_path: str | None = None
    #: the ``project`` column of its row
    project: str = "HST"
    #: False: served without ETag and Last-Modified, conditional headers ignored
    validators: bool = True
    #: how often the archive reprocessed it (the body changes with each)
    generation: int = 0
    #: the calibration software's version in its FITS header (``CAL_VER``); None with
    #: generation 0: the emulator's original header, with no provenance cards
    cal_ver: str | None = None
    #: generation -> (size, style, cal_ver) it had, for every earlier generation
    past: dict[int, tuple[int, BodyStyle, str | None]] = field(default_factory=dict)
    #: no longer in any product list
    withdrawn: bool = False
    #: when withdrawn: whether downloads (and the bucket) still serve it
    served_when_withdrawn: bool = True

    @property
    def data_uri(self) -> str:
        return self.uri or f"mast:{self.obs_collection}/product/{self.filename}"

    @property
    def exclusive(self) -> bool:
        return self.data_rights.upper() != PUBLIC

    @property
    def served(self) -> bool:
        """Whether downloads find it (a withdrawn product may still be served)."""
        return not self.withdrawn or self.served_when_withdrawn

    @property
    def cloud_key(self) -> str | None:
        """Where the ``stpubdata`` bucket keeps this file, rights aside: ``cloud_path``
        when set (JWST), else for HST
        ``hst/public/<obs_id[:4]>/<obs_id>/<productFilename>``, lower-case directories."""
        if self.uri is not None or not self.cloud:
            return None
        if self.cloud_path is not None:
            return self.cloud_path
        if self.obs_collection.upper() != "HST":
            return None
        dataset = self.obs_id.lower()
        return f"hst/public/{dataset[:4]}/{dataset}/{self.filename}"

    def body_spec(self, generation: int | None = None) -> tuple[int, BodyStyle, Provenance | None]:
        """(size, style, provenance) of its body now or at an earlier ``generation``
        (as it was when last served); KeyError for a generation it never had."""
        if generation is None or generation == self.generation:
            size, style, cal_ver, generation = self.size, self.style, self.cal_ver, self.generation
        elif generation in self.past:
            size, style, cal_ver = self.past[generation]
        else:
            raise KeyError(f"{self.data_uri} has no generation {generation}")
        if generation == 0 and cal_ver is None:
            return size, style, None
        return size, style, Provenance(generation, cal_ver or "", self.obs_collection)

    def row(self) -> Row:
        """The product as ``Mast.Caom.Products`` sends it (its ``cells`` applied)."""
        row: Row = {
            "obsID": self.obsid,
            "obs_collection": self.obs_collection,
            "dataproduct_type": self.dataproduct_type,
            "obs_id": self.obs_id,
            "description": self.description,
            "type": "S",
            "dataURI": self.data_uri,
            "productType": self.product_type,
            "productGroupDescription": self.group,
            "productSubGroupDescription": self.subgroup,
            "productDocumentationURL": None,
            "project": self.project,
            "prvversion": self.prvversion,
            "proposal_id": self.proposal_id,
            "productFilename": self.filename,
            "size": self.size,
            "parent_obsid": self.obsid,
            "dataRights": self.data_rights,
            "calib_level": self.calib_level,
            "filters": self.filters,
        }
        row.update(self.cells)
        return row


@dataclass(slots=True)
class Observation:
    """One CAOM observation row (every column of :data:`CAOM_COLUMNS`)."""

    fields: Row
    products: list[CatalogueProduct] = field(default_factory=list)
    #: other observations' products listed here too, with the cells their row changes
    listings: list[tuple[CatalogueProduct, Row]] = field(default_factory=list)

    @property
    def obsid(self) -> str:
        return str(self.fields["obsid"])

    @property
    def obs_id(self) -> str:
        return str(self.fields["obs_id"])

    def row(self) -> Row:
        return dict(self.fields)


# -- how the archive names a product ----------------------------------------------------

_DESCRIPTIONS = {
    "raw": "Raw exposure",
    "asn": "Association",
    "spt": "Support",
    "trl": "Trailer",
    "wav": "Wavecal exposure",
    "jif": "Jitter image",
    "jit": "Jitter",
    "tag": "Time-tag events",
    "lrc": "Local rate check image",
    "flt": "Flat-fielded exposure",
    "x1d": "1D extracted spectrum",
    "x2d": "2D rectified spectrum",
}


def _suffix(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def subgroup_of(filename: str) -> str:
    return _suffix(filename).upper()


def describe(filename: str, obs: Row) -> str:
    instrument = str(obs.get("instrument_name") or "").split("/")[0]
    if not filename.endswith(".fits"):
        return f"Preview-Full {instrument}".strip()
    kind = _DESCRIPTIONS.get(_suffix(filename), "Calibrated exposure")
    return f"DADS {subgroup_of(filename)} file - {kind} {instrument}".strip()
