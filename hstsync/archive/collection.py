"""The collections hstsync mirrors, HST and JWST, and how they differ. Pure.

Both come through the same Observations API; what differs is written down here once:

- **Proposal ids.** HST's catalogue keeps them as written (``"7291"``); JWST's as five
  digits (``"01345"``), and whether an unpadded ``"1345"`` finds that program is not
  settled by the evidence (astroquery's own remote tests query unpadded JWST ids, user
  scripts query padded ones). A JWST request asks for both forms in one criterion
  (:func:`query_ids`), which finds the program whichever way the archive matches.
- **Product-list batches.** JWST lists repeat each file many times (a level-3 file
  under every member exposure), and whole-proposal lists time out: JWST's batches of
  obsids are smaller, and a batch that fails is halved
  (:func:`hstsync.archive.paging.batch_sizes`).
- **Kinds of file worth counting apart** (``plan``): guide-star files (``AUXILIARY``,
  ``_gs-`` in the name), about ten times as many as the science files, and association
  files (``INFO``, ``_asn.json``).
"""

from __future__ import annotations

from hstsync.model import Product

HST = "HST"
JWST = "JWST"
#: the collections a manifest may name (``[criteria] obs_collection``)
COLLECTIONS = (HST, JWST)

#: digits of a JWST proposal id as the catalogue keeps it
JWST_ID_DIGITS = 5


def canonical_id(pid: str, collection: str) -> str:
    """A proposal id (digits, no leading zeros) as the collection's catalogue keeps it:
    JWST's zero-padded to five digits (``1345`` -> ``"01345"``), HST's as it is."""
    return pid.zfill(JWST_ID_DIGITS) if collection == JWST else pid


def query_ids(collection: str, ids: tuple[str, ...]) -> list[str]:
    """The ``proposal_id`` values a query sends: each id as the catalogue keeps it and,
    for JWST, unpadded as well (``["1345", "01345"]``), so the program is found both
    where the archive matches the stored text and where it matches numbers."""
    if collection != JWST:
        return list(ids)
    forms: dict[str, None] = {}
    for pid in ids:
        forms[pid.lstrip("0") or pid] = None
        forms[pid] = None
    return list(forms)


def is_guide_star(product: Product) -> bool:
    """A JWST guide-star file: ``_gs-`` in its name (``..._gs-acq1_..._cal.fits``)."""
    return "_gs-" in product.filename


def is_association(product: Product) -> bool:
    """An association file, which the pipeline needs to be run again: ``INFO``,
    ``..._asn.json``."""
    return product.product_type.upper() == "INFO" or product.filename.endswith("_asn.json")
