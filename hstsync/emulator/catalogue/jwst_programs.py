"""JWST programs as the archive lists them, and how the emulator builds them.

One *observation* of a JWST program (its number in the proposal, ``o001``) is, in
the catalogue, one level-3 CAOM observation (``jw01345-o001_t001_nircam_clear-f200w``)
and one exposure-level observation per exposure and detector
(``jw01345001001_02101_00001_nrca1``, visit 001 of observation 001). The archive's
habits (``docs/emulator.md``, "JWST"):

- the proposal id is kept as five digits (``"01345"``), ``obs_collection`` is
  ``JWST``, instruments are named ``NIRCAM/IMAGE``, ``prvversion`` is the pipeline's
  version, dataURIs are ``mast:JWST/product/<file>``;
- each exposure has ``_uncal`` (calib_level 1), ``_rate`` and ``_cal`` (2) files;
  the level-3 observation ``_i2d``, ``_segm``, ``_cat.ecsv`` (3), an ``_i2d.jpg``
  preview and the association ``_asn.json`` (productType ``INFO``);
- guide-star files (``AUXILIARY``, ``_gs-`` in their names), many per visit, listed
  under every exposure of the visit;
- the level-3 products are listed again under every member exposure, and the members'
  files under the level-3 observation, ``repeats`` times each (one file, many rows).

The bucket keys are the catalogue's own data (``cloud_path``), not derived from the
names by the client's rule: ``jwst/public/jw<PPPPP>/jw<PPPPP><OOO><VVV>/<file>`` for
an exposure's (and its visit's guide-star) files, ``jwst/public/jw<PPPPP>/L3/t/o<OOO>/
<file>`` for the level-3 files. The association file is kept out of the bucket (not
in our evidence).

:func:`add_jwst_observation` builds one such observation; the realistic program
(:mod:`hstsync.emulator.jwst`) and :func:`add_synthetic_jwst_program`
(:meth:`Catalogue.add_jwst_program`, for benchmarks) are made of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hstsync.emulator.catalogue.records import (
    EXCLUSIVE_ACCESS,
    MRP,
    PUBLIC,
    CatalogueProduct,
    Observation,
)
from hstsync.emulator.fits import BLOCK
from hstsync.emulator.quirks import BodyStyle

if TYPE_CHECKING:
    from hstsync.emulator.catalogue.building import CatalogueBuilder

#: the JWST pipeline's version the emulator's JWST products carry (``prvversion``,
#: ``CAL_VER``)
PIPELINE_VERSION = "1.12.5"
DETECTORS = ("nrca1", "nrcb1")
#: the kinds of guide-star file a visit has, cycled (each as _uncal and _cal)
_GUIDE_KINDS = ("acq1", "acq2", "track", "fg")
#: guide-star file names carry the time of the guiding (year, day of year, time)
_GUIDE_EPOCH = datetime(2022, 12, 19, 6, 19, 48, tzinfo=UTC)

_DESCRIPTIONS = {
    "uncal": "exposure (L1b): Uncalibrated 4D exposure data",
    "rate": "exposure (L2a): countrate image",
    "cal": "exposure (L2b): calibrated exposure data",
    "i2d": "Level-3 rectified and combined 2D image",
    "segm": "Level-3 segmentation map",
    "cat": "Level-3 source catalog",
    "asn": "Level-3 association",
    "jpg": "Preview-Full",
    "gs": "guide star data",
}


def visit_id(pid: str, observation: int, visit: int) -> str:
    """``jw01345001001``: program, observation and visit (the bucket's directory)."""
    return f"jw{pid}{observation:03d}{visit:03d}"


def exposure_obs_id(pid: str, observation: int, visit: int, exposure: int, detector: str) -> str:
    """``jw01345001001_02101_00001_nrca1``: one exposure on one detector."""
    return f"{visit_id(pid, observation, visit)}_02101_{exposure:05d}_{detector}"


def level3_obs_id(pid: str, observation: int, filter_name: str, target: int = 1) -> str:
    """``jw01345-o001_t001_nircam_clear-f200w``: the combined (level-3) observation."""
    return f"jw{pid}-o{observation:03d}_t{target:03d}_nircam_clear-{filter_name.lower()}"


@dataclass(slots=True)
class JwstSizes:
    """Bytes of each kind of file (FITS sizes: multiples of 2880, at least 5760)."""

    uncal: int = 6 * BLOCK
    rate: int = 4 * BLOCK
    cal: int = 5 * BLOCK
    guide_star: int = 2 * BLOCK
    i2d: int = 8 * BLOCK
    segm: int = 3 * BLOCK
    cat: int = 3217
    preview: int = 2345
    asn: int = 1871


@dataclass(slots=True)
class JwstObservation:
    """What :func:`add_jwst_observation` made."""

    level3: Observation
    members: list[Observation] = field(default_factory=list)
    products: list[CatalogueProduct] = field(default_factory=list)


def _fields(
    pid: str,
    obs_id: str,
    calib_level: int,
    filter_name: str,
    t0: float,
    data_rights: str,
    title: str,
    target: str,
) -> dict[str, Any]:
    seed = int(pid) if pid.isdigit() else sum(pid.encode())
    ra = 214.8 + (seed % 97) * 0.001
    dec = 52.8 + (seed % 89) * 0.001
    return {
        "dataproduct_type": "image",
        "calib_level": calib_level,
        "obs_collection": "JWST",
        "obs_id": obs_id,
        "target_name": target,
        "s_ra": ra,
        "s_dec": dec,
        "t_min": t0 if calib_level >= 0 else None,
        "t_max": t0 + 0.02 if calib_level >= 0 else None,
        "t_exptime": 2834.5 if calib_level >= 0 else None,
        "wavelength_region": "INFRARED",
        "filters": filter_name.upper(),
        "em_min": 1755.0,
        "em_max": 2226.0,
        "target_classification": "GALAXY",
        "obs_title": title,
        "t_obs_release": t0 + 365 if calib_level >= 0 else None,
        "instrument_name": "NIRCAM/IMAGE",
        "proposal_pi": "Emulator, Webb",
        "proposal_id": pid,
        "proposal_type": "ERS",
        "project": "JWST",
        "provenance_name": "CALJWST",
        "s_region": f"CIRCLE {ra:.6f} {dec:.6f} 0.03",
        "jpegURL": None,
        "dataURL": None,
        "dataRights": data_rights,
        "mtFlag": False,
        "intentType": "science",
    }


def _add(
    catalogue: CatalogueBuilder,
    obs: Observation,
    filename: str,
    size: int,
    key: str,
    *,
    kind: str,
    cloud: bool,
    **options: Any,
) -> CatalogueProduct:
    return catalogue.add_product(
        obs.obs_id,
        filename,
        size,
        description=_DESCRIPTIONS[kind],
        prvversion=PIPELINE_VERSION,
        cal_ver=PIPELINE_VERSION,
        cloud_path=key,
        cloud=cloud,
        **options,
    )


def add_jwst_observation(
    catalogue: CatalogueBuilder,
    proposal_id: str,
    observation: int,
    *,
    visits: int,
    exposures: int,
    detectors: tuple[str, ...] = DETECTORS,
    filter_name: str = "F200W",
    guide_stars: int = 4,
    repeats: int = 1,
    sizes: JwstSizes | None = None,
    data_rights: str = PUBLIC,
    exclusive_visits: frozenset[int] = frozenset(),
    exclusive_level3: bool = False,
    cloud: bool = True,
    t0: float = 59935.5,
    title: str = "A JWST program for the hstsync MAST emulator",
    target: str = "EMULATOR-FIELD",
    obsids: list[str] | None = None,
    limit: int | None = None,
) -> JwstObservation:
    """Add one JWST observation of program ``proposal_id`` (five digits): its
    exposure-level observations (``visits`` x ``exposures`` x ``detectors``, at most
    ``limit`` of them), their files, ``guide_stars`` guide-star files per visit, the
    level-3 observation and its files, and the repeat listings (``repeats`` times
    each). Everything has ``data_rights``, but the visits in ``exclusive_visits``
    (and with ``exclusive_level3`` the level-3 observation) are EXCLUSIVE_ACCESS;
    ``cloud`` False keeps every file out of the bucket. ``obsids``, when given, are
    the obsids to use, in order (the level-3 observation's first)."""
    if repeats < 1 or visits < 1 or exposures < 1 or not detectors:
        raise ValueError("visits, exposures, detectors and repeats must be at least 1")
    sizes = sizes or JwstSizes()
    pid = proposal_id
    numbers = iter(obsids or [])
    left = limit if limit is not None else visits * exposures * len(detectors)

    def obsid() -> dict[str, Any]:
        given = next(numbers, None)
        return {"obsid": given, "objID": str(int(given) + 1_000_000)} if given else {}

    l3_id = level3_obs_id(pid, observation, filter_name)
    l3_rights = EXCLUSIVE_ACCESS if exclusive_level3 else data_rights
    level3 = catalogue.add_observation(
        **{
            **_fields(pid, l3_id, 3, filter_name, t0, l3_rights, title, target),
            "jpegURL": f"mast:JWST/product/{l3_id}_i2d.jpg",
        },
        **obsid(),
    )
    made = JwstObservation(level3)
    l3_dir = f"jwst/public/jw{pid}/L3/t/o{observation:03d}"
    for suffix, size, kind, options in (
        ("i2d.fits", sizes.i2d, "i2d", {"group": MRP}),
        ("segm.fits", sizes.segm, "segm", {}),
        ("cat.ecsv", sizes.cat, "cat", {"style": BodyStyle.TEXT, "group": MRP}),
        ("i2d.jpg", sizes.preview, "jpg", {"style": BodyStyle.JPEG, "product_type": "PREVIEW"}),
    ):
        filename = f"{l3_id}_{suffix}"
        made.products.append(
            _add(
                catalogue,
                level3,
                filename,
                size,
                f"{l3_dir}/{filename}",
                kind=kind,
                cloud=cloud,
                calib_level=3,
                **options,
            )
        )
    asn = f"jw{pid}-o{observation:03d}_20221220t{observation % 24:02d}3456_image3_00001_asn.json"
    made.products.append(
        _add(
            catalogue,
            level3,
            asn,
            sizes.asn,
            f"{l3_dir}/{asn}",
            kind="asn",
            cloud=False,  # whether the bucket holds association files is not in our evidence
            calib_level=3,
            product_type="INFO",
            style=BodyStyle.TEXT,
        )
    )
    level3_files = list(made.products)

    for visit in range(1, visits + 1):
        if left <= 0:
            break
        rights = EXCLUSIVE_ACCESS if visit in exclusive_visits else data_rights
        visit_dir = f"jwst/public/jw{pid}/{visit_id(pid, observation, visit)}"
        visit_members: list[Observation] = []
        for exposure in range(1, exposures + 1):
            for detector in detectors:
                if left <= 0:
                    break
                left -= 1
                exp_id = exposure_obs_id(pid, observation, visit, exposure, detector)
                member = catalogue.add_observation(
                    **_fields(pid, exp_id, 2, filter_name, t0 + visit * 0.1, rights, title, target),
                    **obsid(),
                )
                visit_members.append(member)
                for suffix, size, level in (
                    ("uncal", sizes.uncal, 1),
                    ("rate", sizes.rate, 2),
                    ("cal", sizes.cal, 2),
                ):
                    filename = f"{exp_id}_{suffix}.fits"
                    product = _add(
                        catalogue,
                        member,
                        filename,
                        size,
                        f"{visit_dir}/{filename}",
                        kind=suffix,
                        cloud=cloud,
                        calib_level=level,
                        **({"group": MRP} if suffix == "cal" else {}),
                    )
                    made.products.append(product)
                    for _ in range(repeats):
                        catalogue.list_under(l3_id, product.data_uri)
                for product in level3_files:
                    for _ in range(repeats):
                        catalogue.list_under(exp_id, product.data_uri)
        # the visit's guide-star files: owned by its first exposure, listed by the others
        owner, others = visit_members[0], visit_members[1:]
        vid = visit_id(pid, observation, visit)
        for n in range(guide_stars):
            kind = _GUIDE_KINDS[(n // 2) % len(_GUIDE_KINDS)]
            when = _GUIDE_EPOCH + timedelta(days=observation, minutes=visit * 97, seconds=n // 2)
            suffix = ("uncal", "cal")[n % 2]
            filename = f"{vid}_gs-{kind}_{when:%Y%j%H%M%S}_{suffix}.fits"
            product = _add(
                catalogue,
                owner,
                filename,
                sizes.guide_star,
                f"{visit_dir}/{filename}",
                kind="gs",
                cloud=cloud,
                calib_level=1 if suffix == "uncal" else 2,
                product_type="AUXILIARY",
            )
            made.products.append(product)
            for other in others:
                catalogue.list_under(other.obs_id, product.data_uri)
        made.members += visit_members
    return made


def add_planned_observation(
    catalogue: CatalogueBuilder,
    proposal_id: str,
    observation: int,
    *,
    filter_name: str = "F444W",
    title: str = "A JWST program for the hstsync MAST emulator",
    target: str = "EMULATOR-FIELD",
    obsid: str | None = None,
) -> Observation:
    """A planned observation not yet executed: calib_level -1, no times, no products
    (the JWST pipeline documents -1 as "planned, but not yet executed")."""
    obs_id = level3_obs_id(proposal_id, observation, filter_name)
    fields = _fields(proposal_id, obs_id, -1, filter_name, 0.0, PUBLIC, title, target)
    extra = {"obsid": obsid, "objID": str(int(obsid) + 1_000_000)} if obsid else {}
    return catalogue.add_observation(**fields, **extra)


def add_synthetic_jwst_program(
    catalogue: CatalogueBuilder,
    proposal_id: str | int,
    *,
    observations: int,
    per_level3: int = 100,
    repeats: int = 1,
    guide_stars: int = 10,
    size: int = 2 * BLOCK,
    level3_size: int | None = None,
    data_rights: str = PUBLIC,
) -> list[CatalogueProduct]:
    """Add :meth:`Catalogue.add_jwst_program`'s deterministic synthetic JWST program."""
    if observations < 0 or per_level3 < 1:
        raise ValueError("observations must not be negative, per_level3 at least 1")
    pid = f"{int(proposal_id):05d}" if str(proposal_id).isdigit() else str(proposal_id)
    per_visit = 2 * len(DETECTORS)  # two exposures, two detectors
    sizes = JwstSizes(
        uncal=size, rate=size, cal=size, guide_star=size, i2d=level3_size or size, segm=size
    )
    start = 1 + sum(
        1
        for o in catalogue.observations()
        if o.fields["proposal_id"] == pid and o.obs_id.startswith(f"jw{pid}-o")
    )
    groups = math.ceil(observations / per_level3)
    if start + groups - 1 > 999:
        raise ValueError("a JWST program has at most 999 observations: raise per_level3")
    made: list[CatalogueProduct] = []
    for g in range(groups):
        members = min(per_level3, observations - g * per_level3)
        made += add_jwst_observation(
            catalogue,
            pid,
            start + g,
            visits=math.ceil(members / per_visit),
            exposures=2,
            guide_stars=guide_stars,
            repeats=repeats,
            sizes=sizes,
            data_rights=data_rights,
            title=f"Synthetic JWST program {pid}",
            target=f"SYNTH-{pid}",
            limit=members,
        ).products
    return made
