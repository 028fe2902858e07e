"""The emulator's archive contents: observations and products, as plain data.

Owns what MAST *knows*: CAOM observation rows, the products of each observation,
and how the portal's filters select among them. :func:`default_catalogue` holds
proposal 7291 exactly as the tutorial shows it; tests and benchmarks grow a
catalogue with :meth:`Catalogue.add_program`, :meth:`Catalogue.add_product` and
change it with :meth:`Catalogue.update_product` / :meth:`Catalogue.set_data_rights`
while the server runs (every method takes the catalogue's lock, so a test thread
may change it while the server thread reads it).

It also keeps the real archive's habits (:mod:`hstsync.emulator.quirks`): a
product's catalogue cells that differ from the truth (``cells``: null, float or
string sizes, a wrong size, null rights), its serving quirks (``chunked``,
``ranges``, ``style``, ``redirect``), products listed again under other
observations (:meth:`Catalogue.list_under`), and a program's portal quirks
(:meth:`Catalogue.set_portal_quirks`). The default catalogue also holds the
realistic program of :mod:`hstsync.emulator.realistic`.
"""

from __future__ import annotations

import fnmatch
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hstsync.emulator.columns import CAOM_COLUMNS, CONTINUOUS
from hstsync.emulator.quirks import BodyStyle, PortalQuirks

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

    @property
    def data_uri(self) -> str:
        return self.uri or f"mast:{self.obs_collection}/product/{self.filename}"

    @property
    def exclusive(self) -> bool:
        return self.data_rights.upper() != PUBLIC

    @property
    def cloud_key(self) -> str | None:
        """Where the ``stpubdata`` bucket keeps this file (HST only), rights aside:
        ``hst/public/<obs_id[:4]>/<obs_id>/<productFilename>``, lower-case directories."""
        if self.obs_collection.upper() != "HST" or self.uri is not None or not self.cloud:
            return None
        dataset = self.obs_id.lower()
        return f"hst/public/{dataset[:4]}/{dataset}/{self.filename}"

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
            "project": "HST",
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

    def listed_size(self) -> Any:
        """The ``size`` the catalogue lists (maybe None, a float, a string, wrong)."""
        return self.cells.get("size", self.size)


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


class Catalogue:
    """Observations in query order, their products, and a dataURI index."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._observations: list[Observation] = []
        self._by_obs_id: dict[str, Observation] = {}
        self._by_obsid: dict[str, Observation] = {}
        self._by_uri: dict[str, CatalogueProduct] = {}
        self._portal_quirks: dict[str, PortalQuirks] = {}
        self._next_obsid = 30_000_000

    # -- reading ---------------------------------------------------------------------

    def observations(self) -> list[Observation]:
        with self._lock:
            return list(self._observations)

    def products(self) -> list[CatalogueProduct]:
        """Every product once (repeat listings are not products of their own)."""
        with self._lock:
            return [p for o in self._observations for p in o.products]

    def program_products(self, proposal_id: str | int) -> list[CatalogueProduct]:
        """The products owned by a program's observations, each once."""
        with self._lock:
            return [
                p
                for o in self._observations
                if o.fields["proposal_id"] == str(proposal_id)
                for p in o.products
            ]

    def product(self, key: str) -> CatalogueProduct | None:
        """The product with this dataURI (or, failing that, this productFilename)."""
        with self._lock:
            found = self._by_uri.get(key)
            if found is None:
                found = next((p for p in self._by_uri.values() if p.filename == key), None)
            return found

    def cloud_product(self, key: str) -> CatalogueProduct | None:
        """The product the bucket keeps under ``key``, whatever its rights, or None."""
        filename = key.rpartition("/")[2]
        with self._lock:
            found = self._by_uri.get(f"mast:HST/product/{filename}")
        return found if found is not None and found.cloud_key == key else None

    def query(
        self, filters: Sequence[Mapping[str, Any]], position: tuple[float, float, float] | None
    ) -> list[Row]:
        """The rows ``Mast.Caom.Filtered`` (``.Position``) answers, in catalogue order."""
        with self._lock:
            rows = [o.row() for o in self._observations]
        selected = []
        for row in rows:
            if position is not None:
                distance = _distance_arcsec(row, position)
                if distance is None or distance > position[2] * 3600:
                    continue
                row["distance"] = distance
            if all(_matches(row, f) for f in filters):
                selected.append(row)
        return selected

    def product_rows(self, obsids: Iterable[str]) -> list[Row]:
        """The rows ``Mast.Caom.Products`` answers for these obsids, in their order."""
        seen: set[str] = set()
        rows: list[Row] = []
        with self._lock:
            for obsid in obsids:
                obs = self._by_obsid.get(obsid.strip())
                if obs is None or obs.obsid in seen:
                    continue
                seen.add(obs.obsid)
                rows.extend(p.row() for p in obs.products)
                for product, cells in obs.listings:
                    # listed here, owned there: obsID is this one, parent_obsid the owner
                    row = product.row()
                    row.update(obsID=obs.obsid, parent_obsid=product.obsid)
                    row.update(cells)
                    rows.append(row)
        return rows

    # -- quirks of the portal ------------------------------------------------------------

    def set_portal_quirks(self, proposal_id: str | int, quirks: PortalQuirks | None) -> None:
        """How the portal answers queries whose rows belong to this program (None: plainly)."""
        with self._lock:
            if quirks is None:
                self._portal_quirks.pop(str(proposal_id), None)
            else:
                self._portal_quirks[str(proposal_id)] = quirks

    def portal_quirks(self, proposal_ids: Iterable[str]) -> PortalQuirks:
        """The merged portal quirks of these programs."""
        merged = PortalQuirks()
        with self._lock:
            for pid in sorted(set(proposal_ids)):
                if pid in self._portal_quirks:
                    merged = merged.merged(self._portal_quirks[pid])
        return merged

    def programs_of(self, obsids: Iterable[str]) -> set[str]:
        """The proposal ids of the observations with these obsids."""
        with self._lock:
            found = (self._by_obsid.get(o.strip()) for o in obsids)
            return {str(o.fields["proposal_id"]) for o in found if o is not None}

    # -- growing ---------------------------------------------------------------------

    def add_observation(self, **fields: Any) -> Observation:
        """Add a CAOM row; missing columns are None, ``obsid`` is allocated if absent."""
        with self._lock:
            if "obsid" not in fields:
                fields["obsid"] = str(self._allocate_obsid())
            row: Row = {name: fields.pop(name, None) for name, _, _, _ in CAOM_COLUMNS}
            if fields:
                raise ValueError(f"unknown CAOM columns: {', '.join(sorted(fields))}")
            row["obsid"] = str(row["obsid"])
            row["proposal_id"] = str(row["proposal_id"])
            obs = Observation(row)
            if obs.obs_id in self._by_obs_id or obs.obsid in self._by_obsid:
                raise ValueError(f"observation {obs.obs_id} ({obs.obsid}) already exists")
            self._observations.append(obs)
            self._by_obs_id[obs.obs_id] = obs
            self._by_obsid[obs.obsid] = obs
            return obs

    def add_product(
        self,
        obs_id: str,
        filename: str,
        size: int,
        *,
        product_type: str = "SCIENCE",
        calib_level: int = 2,
        data_rights: str | None = None,
        description: str | None = None,
        group: str | None = None,
        subgroup: str | None = None,
        data_uri: str | None = None,
        product_obs_id: str | None = None,
        cells: Mapping[str, Any] | None = None,
        chunked: bool = False,
        ranges: bool = True,
        style: BodyStyle | str = BodyStyle.FITS,
        redirect: bool = False,
        cloud: bool = True,
    ) -> CatalogueProduct:
        """Add a product to observation ``obs_id``; rights default to the observation's.

        ``data_uri`` replaces the usual ``mast:HST/product/<filename>`` (for tests
        of catalogue rows whose URI and filename disagree). ``product_obs_id`` is the
        product's own ``obs_id`` when it differs from its observation's (its mirror
        path and bucket key follow it). The other keywords are the product quirks of
        :mod:`hstsync.emulator.quirks`.
        """
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            if obs is None:
                raise KeyError(f"no observation {obs_id!r}")
            f = obs.fields
            product = CatalogueProduct(
                obsid=obs.obsid,
                obs_id=product_obs_id or obs.obs_id,
                filename=filename,
                size=int(size),
                product_type=product_type,
                calib_level=calib_level,
                data_rights=data_rights or str(f["dataRights"] or PUBLIC),
                description=description or _describe(filename, f),
                group=group,
                subgroup=subgroup if subgroup is not None else _subgroup(filename),
                obs_collection=str(f["obs_collection"] or "HST"),
                dataproduct_type=str(f["dataproduct_type"] or "image"),
                proposal_id=str(f["proposal_id"] or ""),
                filters=str(f["filters"] or ""),
                prvversion=str(f["provenance_name"]) if f["provenance_name"] else None,
                uri=data_uri,
                cells=dict(cells or {}),
                chunked=chunked,
                ranges=ranges,
                style=BodyStyle(style),
                redirect=redirect,
                cloud=cloud,
            )
            if product.data_uri in self._by_uri:
                raise ValueError(f"product {product.data_uri} already exists")
            obs.products.append(product)
            self._by_uri[product.data_uri] = product
            return product

    def list_under(self, obs_id: str, key: str, **cells: Any) -> None:
        """List product ``key`` (dataURI or filename) again under observation ``obs_id``,
        as MAST's association and HAP rows list their members' files; ``cells``
        change that row only (e.g. ``obs_id=...``)."""
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            product = self.product(key)
            if obs is None or product is None:
                raise KeyError(f"no observation {obs_id!r} or no product {key!r}")
            obs.listings.append((product, dict(cells)))

    def set_product_quirks(
        self,
        pattern: str,
        *,
        cells: Mapping[str, Any] | None = None,
        chunked: bool | None = None,
        ranges: bool | None = None,
        style: BodyStyle | str | None = None,
        redirect: bool | None = None,
        cloud: bool | None = None,
    ) -> list[CatalogueProduct]:
        """Give every product whose productFilename matches ``pattern`` (fnmatch) these
        quirks (None: unchanged; ``cells`` are added to its own); the products changed."""
        with self._lock:
            chosen = [p for p in self._by_uri.values() if fnmatch.fnmatchcase(p.filename, pattern)]
            for product in chosen:
                product.cells.update(cells or {})
                if chunked is not None:
                    product.chunked = chunked
                if ranges is not None:
                    product.ranges = ranges
                if style is not None:
                    product.style = BodyStyle(style)
                if redirect is not None:
                    product.redirect = redirect
                if cloud is not None:
                    product.cloud = cloud
            return chosen

    def update_product(
        self,
        key: str,
        *,
        size: int | None = None,
        data_rights: str | None = None,
        product_type: str | None = None,
        calib_level: int | None = None,
    ) -> CatalogueProduct:
        """Change a live product (by dataURI or filename): a new size is a new body."""
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            if size is not None:
                product.size = int(size)
            if data_rights is not None:
                product.data_rights = data_rights
            if product_type is not None:
                product.product_type = product_type
            if calib_level is not None:
                product.calib_level = calib_level
            product.version += 1
            product.modified = max(time.time(), product.modified + 1)
            return product

    def remove_product(self, key: str) -> None:
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            del self._by_uri[product.data_uri]
            self._by_obsid[product.obsid].products.remove(product)
            for obs in self._observations:
                obs.listings = [(p, c) for p, c in obs.listings if p is not product]

    def set_data_rights(self, proposal_id: str | int, data_rights: str) -> None:
        """Make a whole program public or exclusive (observations and products)."""
        with self._lock:
            for obs in self._observations:
                if obs.fields["proposal_id"] == str(proposal_id):
                    obs.fields["dataRights"] = data_rights
                    for product in obs.products:
                        product.data_rights = data_rights
                        product.version += 1

    def add_program(
        self,
        proposal_id: str | int,
        *,
        files: int,
        size: int,
        data_rights: str = PUBLIC,
        instrument: str = "WFC3/UVIS",
        per_observation: int = 4,
    ) -> list[CatalogueProduct]:
        """A deterministic synthetic program: ``files`` products of ``size`` bytes each.

        Products are spread ``per_observation`` (at most 8) to an observation; each is
        a calib_level 2 SCIENCE "Minimum Recommended Products" FITS file, so the
        tutorial's filters select all of them.
        """
        if files < 0 or size < 0:
            raise ValueError("files and size must not be negative")
        per_obs = max(1, min(per_observation, len(_SYNTH_SUFFIXES)))
        pid = str(proposal_id)
        letter = _INSTRUMENT_LETTER.get(instrument.split("/")[0].upper(), "i")
        code = _base36(int(pid) if pid.isdigit() else sum(pid.encode()))
        made: list[CatalogueProduct] = []
        with self._lock:
            start = sum(1 for o in self._observations if o.fields["proposal_id"] == pid)
            for k in range(math.ceil(files / per_obs)):
                index = start + k
                obs = self.add_observation(
                    **_synthetic_fields(pid, f"{letter}{code}{index:04d}", instrument, index),
                    dataRights=data_rights,
                )
                for suffix in _SYNTH_SUFFIXES[: min(per_obs, files - k * per_obs)]:
                    made.append(
                        self.add_product(
                            obs.obs_id,
                            f"{obs.obs_id}_{suffix}.fits",
                            size,
                            group=MRP,
                            subgroup=suffix.upper(),
                        )
                    )
        return made

    def _allocate_obsid(self) -> int:
        while str(self._next_obsid) in self._by_obsid:
            self._next_obsid += 1
        self._next_obsid += 1
        return self._next_obsid - 1


# -- matching the portal's filters ------------------------------------------------------


def _matches(row: Row, flt: Mapping[str, Any]) -> bool:
    name = str(flt.get("paramName", ""))
    column = next((c for c in row if c.lower() == name.lower()), None)
    if column is None:
        return False
    value = row[column]
    values = flt.get("values") or []
    if column in CONTINUOUS:
        if value is None:
            return False
        ranges = [v for v in values if isinstance(v, Mapping)]
        return any(_in_range(float(value), r) for r in ranges) if ranges else True
    if value is None:
        return False
    separator = flt.get("separator")
    parts = str(value).split(separator) if separator else [str(value)]
    wanted = {str(v).lower() for v in values}
    free = flt.get("freeText")
    pattern = _free_text(str(free)) if free else None
    return any(
        p.strip().lower() in wanted or (pattern is not None and pattern.fullmatch(p.strip()))
        for p in parts
    )


def _in_range(value: float, bounds: Mapping[str, Any]) -> bool:
    low, high = bounds.get("min"), bounds.get("max")
    return (low is None or value >= float(low)) and (high is None or value <= float(high))


def _free_text(text: str) -> re.Pattern[str]:
    # MAST's free text uses SQL's % wildcard; fnmatch's * is the same idea.
    return re.compile(fnmatch.translate(text.replace("%", "*")), re.IGNORECASE)


def _distance_arcsec(row: Row, position: tuple[float, float, float]) -> float | None:
    ra, dec = row.get("s_ra"), row.get("s_dec")
    if ra is None or dec is None:
        return None
    ra1, dec1, ra2, dec2 = map(math.radians, (float(ra), float(dec), position[0], position[1]))
    cos = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos)))) * 3600


# -- synthetic and default content ----------------------------------------------------

_SYNTH_SUFFIXES = ("flt", "flc", "drz", "drc", "crj", "crc", "sfl", "x1d")
_INSTRUMENT_LETTER = {"WFC3": "i", "ACS": "j", "STIS": "o", "COS": "l", "NICMOS": "n"}
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


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _suffix(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def _subgroup(filename: str) -> str:
    return _suffix(filename).upper()


def _describe(filename: str, obs: Row) -> str:
    instrument = str(obs.get("instrument_name") or "").split("/")[0]
    if not filename.endswith(".fits"):
        return f"Preview-Full {instrument}".strip()
    kind = _DESCRIPTIONS.get(_suffix(filename), "Calibrated exposure")
    return f"DADS {_subgroup(filename)} file - {kind} {instrument}".strip()


def _synthetic_fields(pid: str, obs_id: str, instrument: str, index: int) -> Row:
    seed = int(pid) if pid.isdigit() else sum(pid.encode())
    ra = (seed * 7.919) % 360
    dec = ((seed * 3.137) % 120) - 60
    t0 = 58000.0 + (seed % 3000) + index * 0.05
    return {
        "dataproduct_type": "image",
        "calib_level": 3,
        "obs_collection": "HST",
        "obs_id": obs_id,
        "target_name": f"SYNTH-{pid}",
        "s_ra": ra,
        "s_dec": dec,
        "t_min": t0,
        "t_max": t0 + 0.01,
        "t_exptime": 600.0,
        "wavelength_region": "Optical",
        "filters": "F606W",
        "em_min": 470.0,
        "em_max": 720.0,
        "target_classification": "GALAXY",
        "obs_title": f"Synthetic program {pid}",
        "t_obs_release": t0 + 365,
        "instrument_name": instrument,
        "proposal_pi": "Emulator, Synthetic",
        "proposal_id": pid,
        "proposal_type": "GO",
        "project": "HST",
        "provenance_name": "CALWF3" if instrument.startswith("WFC3") else "CALACS",
        "s_region": f"CIRCLE {ra:.6f} {dec:.6f} 0.02",
        "mtFlag": False,
        "intentType": "science",
    }


_TITLE = "Cooled Gas in X-Ray Emitting Elliptical Galaxies"
_POLY_FUV = (
    "POLYGON 183.79519926 33.16953302 183.78125026 33.16059724 183.78122982 33.16061959 "
    "183.79517882 33.16955537 183.79519926 33.16953302"
)
_POLY_CCD = (
    "POLYGON 183.79705483 33.16183874 183.78950215 33.15707092 183.77936635 33.16832094 "
    "183.78691941 33.17308937 183.79705483 33.16183874"
)

# The tutorial's proposal_obs table, row for row and in its order:
# obs_id, type, calib, t_min, t_max, exptime, region, filters, em_min, em_max, release,
# instrument, s_region, has preview, obsid, objID
_7291_ROWS: tuple[tuple[Any, ...], ...] = (
    ("o58701010", "spectrum", 3, 51190.01461732639, 51190.0397909375, 2175.0, "UV", "G140L",
     115.0, 173.0, 51555.03978005, "STIS/FUV-MAMA", _POLY_FUV, True, "24919901", "153504018"),
    ("o58701030", "spectrum", 3, 51190.13977920139, 51190.17388799768, 2947.0, "UV", "G140L",
     115.0, 173.0, 51555.1738773, "STIS/FUV-MAMA", _POLY_FUV, True, "24919903", "153503852"),
    ("o58701byq", "image", 1, 51190.00671253472, 51190.00872850695, 1.5, "Optical", "MIRVIS",
     None, None, 51555.00872681, "STIS/CCD", _POLY_CCD, False, "24454469", "121753849"),
    ("o58701020", "spectrum", 3, 51190.07262658565, 51190.106735416666, 2947.0, "UV", "G140L",
     115.0, 173.0, 51555.10672453, "STIS/FUV-MAMA", _POLY_FUV, True, "24919902", "153503579"),
    ("o58701bzq", "image", 1, 51190.01169290509, 51190.011701006944, 0.7, "Optical", "MIRVIS",
     None, None, 51555.0116898, "STIS/CCD", _POLY_FUV, False, "24454470", "124583200"),
)  # fmt: skip

# The 15 products of a STIS/FUV-MAMA spectrum: suffix, productType, calib_level,
# size in 2880-byte blocks, Minimum Recommended Product?
_MAMA_PRODUCTS: tuple[tuple[str, str, int, int, bool], ...] = (
    ("raw.fits", "SCIENCE", 1, 2925, False),
    ("asn.fits", "AUXILIARY", 1, 4, False),
    ("spt.fits", "AUXILIARY", 1, 13, False),
    ("trl.fits", "AUXILIARY", 1, 14, False),
    ("wav.fits", "SCIENCE", 1, 739, False),
    ("jif.fits", "AUXILIARY", 1, 7, False),
    ("jit.fits", "AUXILIARY", 1, 14, False),
    ("tag.fits", "SCIENCE", 1, 4205, False),
    ("lrc.fits", "AUXILIARY", 1, 92, False),
    ("x1d.fits", "SCIENCE", 2, 27, True),  # 77760
    ("x2d.fits", "SCIENCE", 2, 5026, True),  # 14474880
    ("flt.fits", "SCIENCE", 2, 3658, True),  # 10535040
    ("x1d.png", "PREVIEW", 2, 12, False),
    ("x2d.png", "PREVIEW", 2, 30, False),
    ("flt.png", "PREVIEW", 2, 25, False),
)
# The products of a STIS/CCD acquisition image.
_CCD_PRODUCTS: tuple[tuple[str, str, int, int, bool], ...] = (
    ("raw.fits", "SCIENCE", 1, 800, False),
    ("spt.fits", "AUXILIARY", 1, 13, False),
    ("trl.fits", "AUXILIARY", 1, 10, False),
    ("jif.fits", "AUXILIARY", 1, 7, False),
)


def default_catalogue() -> Catalogue:
    """Proposal 7291 as the tutorial shows it: five observations, 15 products for each
    spectrum (so the first two give the tutorial's 30), four for each CCD image; and
    the realistic program (:data:`hstsync.emulator.realistic.PROPOSAL_ID`) with every
    data habit of the real archive at once."""
    # imported here: realistic.py builds on this module's Catalogue
    from hstsync.emulator.realistic import add_realistic_program

    cat = _tutorial_catalogue()
    add_realistic_program(cat)
    return cat


def _tutorial_catalogue() -> Catalogue:
    cat = Catalogue()
    for (obs_id, kind, calib, t_min, t_max, exptime, region, filters, em_min, em_max,
         release, instrument, region_poly, preview, obsid, objid) in _7291_ROWS:  # fmt: skip
        cat.add_observation(
            dataproduct_type=kind,
            calib_level=calib,
            obs_collection="HST",
            obs_id=obs_id,
            target_name="TON1480",
            s_ra=183.7882083333,
            s_dec=33.16516666667,
            t_min=t_min,
            t_max=t_max,
            t_exptime=exptime,
            wavelength_region=region,
            filters=filters,
            em_min=em_min,
            em_max=em_max,
            target_classification="GALAXY",
            obs_title=_TITLE,
            t_obs_release=release,
            instrument_name=instrument,
            proposal_pi="Bregman, Joel N.",
            proposal_id="7291",
            proposal_type="GO",
            project="HST",
            sequence_number=None,
            provenance_name="CALSTIS",
            s_region=region_poly,
            jpegURL=f"mast:HST/product/{obs_id}_x1d.png" if preview else None,
            dataURL=f"mast:HST/product/{obs_id}_{'flt' if preview else 'raw'}.fits",
            dataRights=PUBLIC,
            mtFlag=False,
            srcDen=None,
            intentType="science",
            obsid=obsid,
            objID=objid,
        )
        for suffix, ptype, level, blocks, mrp in _MAMA_PRODUCTS if preview else _CCD_PRODUCTS:
            cat.add_product(
                obs_id,
                f"{obs_id}_{suffix}",
                blocks * 2880,
                product_type=ptype,
                calib_level=level,
                group=MRP if mrp else None,
            )
    return cat
