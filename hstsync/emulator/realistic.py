"""A realistic program: every data habit of the real archive at once, none fatal.

Owns proposal :data:`PROPOSAL_ID` of the default catalogue and
:func:`expected_products`, what a correct mirror of it holds. Five ACS/WFC
observations (an association, its two exposures, two HAP products) list 26 product
rows for 14 unique files: 12 rows repeat a dataURI already listed, as association
and HAP rows list their members' files. Every file can be fetched and is served
byte-identical every time; what is odd is only how it is *described* and *served*:

==========================================  ==================================================
file                                        quirk
==========================================  ==================================================
jbqx01kcq_raw.fits                          no Range support (200 to a ranged GET, no
                                            Accept-Ranges); valid CHECKSUM/DATASUM
jbqx01kcq_flt.fits                          odd header (NUL padding after END, non-standard
                                            cards, a long CONTINUE string), no checksums
jbqx01kcq_flc.fits                          size sent as a string ("11520"); no checksums
jbqx01kcq_spt.fits                          null dataRights and null description
jbqx01kdq_raw.fits                          null size
jbqx01kdq_flt.fits                          catalogue size one block too large
jbqx01kdq_flc.fits                          catalogue size one block too small; no checksums
jbqx01kdq_trl.fits                          chunked (no Content-Length); size sent as 5760.0
jbqx01020_asn.fits                          chunked (no Content-Length); valid checksums
jbqx01021_drz.fits                          obs_id jbqx01021, listed under jbqx01020;
                                            redirected to the cdn listener
jbqx01021_drc.fits                          obs_id jbqx01020 while its name's root is
                                            jbqx01021; valid checksums
hst_12062_01_acs_wfc_f606w_jbqx01_drc.fits  redirected to the cdn; parent_obsid "0"
hst_12062_01_acs_wfc_f606w_jbqx01_drc.jpg   a JPEG preview, not FITS
hst_12062_01_acs_wfc_total_jbqx01_drc.fits  size sent as a float; valid checksums
==========================================  ==================================================

The portal pages its product list 10 rows at a time (three pages), declares ``size``
``int`` on odd pages and ``float`` on even ones (so astroquery's table has a float
``size`` column with masked cells), answers every query ``EXECUTING`` twice before
its result, and takes 10 ms per obsid asked for.

Not here, on purpose: a null ``obs_id`` (no mirror path can be formed; use
``cells={"obs_id": None}`` on a product of your own) and anything that fails for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hstsync.emulator.catalogue import MRP, PUBLIC, Catalogue
from hstsync.emulator.fits import BLOCK, Bodies
from hstsync.emulator.quirks import BodyStyle, PortalQuirks

#: Proposal 12062 is the program whose product list astroquery's documentation counts
#: (180 of its 370 rows repeat a dataURI), so it is the natural name for a program
#: built around repeats. The rows below are invented in its image (ACS/WFC, an
#: association with HAP products, as the j8vg01021_drz example of docs/design.md,
#: "Repeated rows"); they are not a copy of the archive's.
PROPOSAL_ID = "12062"

PORTAL_QUIRKS = PortalQuirks(
    executing_rounds=2, page_rows=10, size_types=("int", "float"), latency_per_obsid=0.01
)

_ASN = "jbqx01020"
_EXP1 = "jbqx01kcq"
_EXP2 = "jbqx01kdq"
_HAP = "hst_12062_01_acs_wfc_f606w_jbqx01"
_TOTAL = "hst_12062_01_acs_wfc_total_jbqx01"

# obs_id, obsid, calib_level, t_min offset (days), provenance
_OBSERVATIONS: tuple[tuple[str, str, int, float, str], ...] = (
    (_ASN, "2003400100", 3, 0.0, "CALACS"),
    (_EXP1, "2003400101", 2, 0.0, "CALACS"),
    (_EXP2, "2003400102", 2, 0.01, "CALACS"),
    (_HAP, "2003400103", 3, 0.0, "HAP-SVM"),
    (_TOTAL, "2003400104", 3, 0.0, "HAP-SVM"),
)

#: Whether HAP files (``hst_<proposal>_...``) are in the public bucket is not in our
#: evidence; here they are not (``cloud=False``), which is also what hstsync's own key
#: rule assumes (tests/test_cloud.py checks the two agree for every product).
_NOT_IN_BUCKET: dict[str, Any] = {"cloud": False}

# owning obs_id, filename, size (bytes), add_product keywords
_PRODUCTS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    (_EXP1, f"{_EXP1}_raw.fits", 3 * BLOCK, {"calib_level": 1, "ranges": False}),
    (_EXP1, f"{_EXP1}_flt.fits", 4 * BLOCK, {"style": BodyStyle.FITS_ODD_HEADER}),
    (
        _EXP1,
        f"{_EXP1}_flc.fits",
        4 * BLOCK,
        {"style": BodyStyle.FITS_NO_CHECKSUM, "cells": {"size": str(4 * BLOCK)}},
    ),
    (
        _EXP1,
        f"{_EXP1}_spt.fits",
        2 * BLOCK,
        {
            "product_type": "AUXILIARY",
            "calib_level": 1,
            "cells": {"dataRights": None, "description": None},
        },
    ),
    (_EXP2, f"{_EXP2}_raw.fits", 3 * BLOCK, {"calib_level": 1, "cells": {"size": None}}),
    (_EXP2, f"{_EXP2}_flt.fits", 4 * BLOCK, {"cells": {"size": 5 * BLOCK}}),
    (
        _EXP2,
        f"{_EXP2}_flc.fits",
        4 * BLOCK,
        {"style": BodyStyle.FITS_NO_CHECKSUM, "cells": {"size": 3 * BLOCK}},
    ),
    (
        _EXP2,
        f"{_EXP2}_trl.fits",
        2 * BLOCK,
        {
            "product_type": "AUXILIARY",
            "chunked": True,
            "style": BodyStyle.FITS_NO_CHECKSUM,
            "cells": {"size": float(2 * BLOCK)},
        },
    ),
    (_ASN, f"{_ASN}_asn.fits", 2 * BLOCK, {"product_type": "AUXILIARY", "chunked": True}),
    (
        _ASN,
        "jbqx01021_drz.fits",
        5 * BLOCK,
        {"calib_level": 3, "product_obs_id": "jbqx01021", "redirect": True, "group": MRP},
    ),
    (_ASN, "jbqx01021_drc.fits", 5 * BLOCK, {"calib_level": 3, "group": MRP}),
    (
        _HAP,
        f"{_HAP}_drc.fits",
        5 * BLOCK,
        {"calib_level": 3, "redirect": True, "cells": {"parent_obsid": "0"}, **_NOT_IN_BUCKET},
    ),
    (
        _HAP,
        f"{_HAP}_drc.jpg",
        4321,
        {"product_type": "PREVIEW", "calib_level": 3, "style": BodyStyle.JPEG, **_NOT_IN_BUCKET},
    ),
    (
        _TOTAL,
        f"{_TOTAL}_drc.fits",
        5 * BLOCK,
        {"calib_level": 3, "cells": {"size": 14400.0}, **_NOT_IN_BUCKET},
    ),
)

# observation -> other observations' files it lists again
_LISTINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        _ASN,
        tuple(f"{e}_{s}.fits" for e in (_EXP1, _EXP2) for s in ("raw", "flt", "flc")),
    ),
    (_HAP, (f"{_EXP1}_flc.fits", f"{_EXP2}_flc.fits", "jbqx01021_drz.fits")),
    (_TOTAL, (f"{_EXP1}_flc.fits", f"{_EXP2}_flc.fits", f"{_HAP}_drc.fits")),
)


def add_realistic_program(catalogue: Catalogue) -> None:
    """Add proposal :data:`PROPOSAL_ID` and its portal quirks to ``catalogue``."""
    t0 = 55496.5  # 2010-10-27, within 12062's cycle
    for obs_id, obsid, calib, offset, provenance in _OBSERVATIONS:
        catalogue.add_observation(
            dataproduct_type="image",
            calib_level=calib,
            obs_collection="HST",
            obs_id=obs_id,
            target_name="ABELL-370-PAR",
            s_ra=39.9705,
            s_dec=-1.5764,
            t_min=t0 + offset,
            t_max=t0 + offset + 0.004,
            t_exptime=339.0,
            wavelength_region="Optical",
            filters="F606W",
            em_min=470.0,
            em_max=720.0,
            target_classification="GALAXY;CLUSTER OF GALAXIES",
            obs_title="A realistic program for the hstsync MAST emulator",
            t_obs_release=t0 + 365,
            instrument_name="ACS/WFC",
            proposal_pi="Emulator, Realistic",
            proposal_id=PROPOSAL_ID,
            proposal_type="GO",
            project="HST",
            provenance_name=provenance,
            s_region="CIRCLE 39.970500 -1.576400 0.04",
            jpegURL=f"mast:HST/product/{_HAP}_drc.jpg" if obs_id == _HAP else None,
            dataURL=None,
            dataRights=PUBLIC,
            mtFlag=False,
            intentType="science",
            obsid=obsid,
            objID=str(int(obsid) + 1_000_000),
        )
    for owner, filename, size, options in _PRODUCTS:
        catalogue.add_product(owner, filename, size, **options)
    for obs_id, filenames in _LISTINGS:
        for filename in filenames:
            catalogue.list_under(obs_id, f"mast:HST/product/{filename}")
    catalogue.set_portal_quirks(PROPOSAL_ID, PORTAL_QUIRKS)


@dataclass(frozen=True, slots=True)
class ExpectedProduct:
    """One unique file a complete mirror of the program holds."""

    data_uri: str
    #: ``mastDownload/<obs_collection>/<obs_id>/<productFilename>``, the product's own
    #: obs_id (``HST`` here, ``JWST`` for :mod:`hstsync.emulator.jwst`)
    relpath: str
    #: exactly the bytes the emulator serves
    body: bytes


def expected_products(catalogue: Catalogue | None = None) -> dict[str, ExpectedProduct]:
    """dataURI -> what a complete mirror holds, for every unique file of the program.

    ``catalogue`` defaults to a fresh default one; pass the one being served when a
    test changed it.
    """
    if catalogue is None:
        catalogue = Catalogue()
        add_realistic_program(catalogue)
    return mirrored_program(catalogue, PROPOSAL_ID)


def mirrored_program(catalogue: Catalogue, proposal_id: str) -> dict[str, ExpectedProduct]:
    """dataURI -> what a complete mirror holds, for every unique file ``catalogue``
    lists for ``proposal_id``: its path under the mirror and its bytes."""
    bodies = Bodies()
    return {
        p.data_uri: ExpectedProduct(
            p.data_uri,
            f"mastDownload/{p.obs_collection}/{p.obs_id}/{p.filename}",
            bodies.get(p.data_uri, *p.body_spec()).all(),
        )
        for p in catalogue.program_products(proposal_id)
    }
