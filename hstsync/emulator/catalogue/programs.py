"""Programs the emulator builds: proposal 7291 exactly as the tutorial shows it, and
deterministic synthetic programs of any size (:meth:`Catalogue.add_program`).

Each builder fills a catalogue it is given; the realistic program lives in
:mod:`hstsync.emulator.realistic`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from hstsync.emulator.catalogue.records import MRP, PUBLIC, CatalogueProduct, Row
from hstsync.emulator.quirks import BodyStyle

if TYPE_CHECKING:
    from hstsync.emulator.catalogue.building import CatalogueBuilder

_SYNTH_SUFFIXES = ("flt", "flc", "drz", "drc", "crj", "crc", "sfl", "x1d")
_INSTRUMENT_LETTER = {"WFC3": "i", "ACS": "j", "STIS": "o", "COS": "l", "NICMOS": "n"}


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


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


def add_synthetic_program(
    catalogue: CatalogueBuilder,
    proposal_id: str | int,
    *,
    files: int,
    size: int,
    data_rights: str = PUBLIC,
    instrument: str = "WFC3/UVIS",
    per_observation: int = 4,
) -> list[CatalogueProduct]:
    """Add :meth:`Catalogue.add_program`'s deterministic synthetic program to ``catalogue``."""
    if files < 0 or size < 0:
        raise ValueError("files and size must not be negative")
    per_obs = max(1, min(per_observation, len(_SYNTH_SUFFIXES)))
    pid = str(proposal_id)
    letter = _INSTRUMENT_LETTER.get(instrument.split("/")[0].upper(), "i")
    code = _base36(int(pid) if pid.isdigit() else sum(pid.encode()))
    made: list[CatalogueProduct] = []
    start = sum(1 for o in catalogue.observations() if o.fields["proposal_id"] == pid)
    for k in range(math.ceil(files / per_obs)):
        index = start + k
        obs = catalogue.add_observation(
            **_synthetic_fields(pid, f"{letter}{code}{index:04d}", instrument, index),
            dataRights=data_rights,
        )
        for suffix in _SYNTH_SUFFIXES[: min(per_obs, files - k * per_obs)]:
            made.append(
                catalogue.add_product(
                    obs.obs_id,
                    f"{obs.obs_id}_{suffix}.fits",
                    size,
                    group=MRP,
                    subgroup=suffix.upper(),
                )
            )
    return made


# -- the tutorial's proposal 7291 ------------------------------------------------------

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


def add_tutorial_program(cat: CatalogueBuilder) -> None:
    """Add proposal 7291 as the tutorial shows it: five observations, 15 products for
    each spectrum, four for each CCD image."""
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
                style=BodyStyle.PNG if suffix.endswith(".png") else BodyStyle.FITS,
            )
