"""A realistic JWST program: the archive's JWST habits through the same Observations API.

Owns proposal :data:`PROPOSAL_ID` (``"01345"``, NIRCam imaging) of the default
catalogue and :func:`expected_products`, what a correct mirror of it holds. The
rows are invented in the image of the real program 1345 (its number is the one
astroquery#2507 uses for whole-proposal JWST product lists); they are not a copy of
the archive's.

- The catalogue keeps the proposal id as five digits: ``proposal_id="01345"`` finds
  it, ``"1345"`` finds nothing (the client must zero-pad). ``obs_collection`` is
  ``JWST``, the instrument ``NIRCAM/IMAGE``, dataURIs ``mast:JWST/product/<file>``,
  ``prvversion`` the pipeline's version (:data:`PIPELINE_VERSION`), which the FITS
  headers' ``CAL_VER`` repeats with ``DATE`` and the CRDS context (``CRDS_CTX``).
- Observation 1 (level-3 observation ``jw01345-o001_t001_nircam_clear-f200w``): two
  visits, two exposures each, on two detectors: eight exposure-level observations
  (``jw01345001001_02101_00001_nrca1`` ...), each with ``_uncal`` (calib_level 1),
  ``_rate`` and ``_cal`` (2) SCIENCE files; eight guide-star files per visit
  (AUXILIARY, ``_gs-`` names), listed under each of the visit's four exposures;
  level-3 ``_i2d.fits``, ``_segm.fits``, ``_cat.ecsv`` (text), an ``_i2d.jpg``
  preview, and the association ``_asn.json`` (INFO, text).
- Repeats: the five level-3 files are listed :data:`REPEATS` times under each of the
  eight members, and the members' 24 files :data:`REPEATS` times under the level-3
  observation (so the ``_i2d`` has 25 rows).
- Observation 2 (``jw01345-o002_t001_nircam_clear-f444w``) is planned, not executed:
  calib_level -1, no times, no products.

Switches of :func:`add_jwst_program`: ``repeats``; ``exclusive`` (visit 2 and the
level-3 observation EXCLUSIVE_ACCESS, for tests of tokens); ``cloud`` (the public
files in the bucket at ``jwst/public/...``; :func:`default_catalogue` leaves it off,
see ``docs/emulator.md``); ``i2d_size`` (a multi-GB mosaic, astroquery#3066).
"""

from __future__ import annotations

from hstsync.emulator.catalogue import Catalogue
from hstsync.emulator.catalogue.jwst_programs import (
    PIPELINE_VERSION,
    JwstSizes,
    add_jwst_observation,
    add_planned_observation,
)
from hstsync.emulator.realistic import ExpectedProduct, mirrored_program

__all__ = [
    "PIPELINE_VERSION",
    "PROPOSAL_ID",
    "REPEATS",
    "add_jwst_program",
    "expected_products",
]

#: the program as the catalogue keeps it: five digits
PROPOSAL_ID = "01345"
#: how often each repeat listing is made (the real archive: up to some hundreds)
REPEATS = 3
_TITLE = "A realistic JWST program for the hstsync MAST emulator"
_TARGET = "EGS-FIELD-1"
#: the level-3 observation's obsid, then the eight members'
_OBSIDS = [str(87_601_000 + n) for n in range(9)]
_PLANNED_OBSID = "87601100"


def add_jwst_program(
    catalogue: Catalogue,
    *,
    repeats: int = REPEATS,
    exclusive: bool = False,
    cloud: bool = True,
    i2d_size: int | None = None,
) -> None:
    """Add proposal :data:`PROPOSAL_ID` to ``catalogue`` (see the module's text)."""
    sizes = JwstSizes()
    if i2d_size is not None:
        sizes.i2d = i2d_size
    add_jwst_observation(
        catalogue,
        PROPOSAL_ID,
        1,
        visits=2,
        exposures=2,
        guide_stars=8,
        repeats=repeats,
        sizes=sizes,
        exclusive_visits=frozenset({2}) if exclusive else frozenset(),
        exclusive_level3=exclusive,
        cloud=cloud,
        title=_TITLE,
        target=_TARGET,
        obsids=_OBSIDS,
    )
    add_planned_observation(
        catalogue, PROPOSAL_ID, 2, title=_TITLE, target=_TARGET, obsid=_PLANNED_OBSID
    )


def expected_products(catalogue: Catalogue | None = None) -> dict[str, ExpectedProduct]:
    """dataURI -> what a complete mirror holds, for every unique file of the program:
    ``mastDownload/JWST/<obs_id>/<productFilename>`` and the exact bytes served.

    ``catalogue`` defaults to a fresh one holding the program alone; pass the one
    being served when a test changed it (its withdrawn files are left out).
    """
    if catalogue is None:
        catalogue = Catalogue()
        add_jwst_program(catalogue)
    return mirrored_program(catalogue, PROPOSAL_ID)
