"""Catalogue rows -> products: the one boundary where an astropy Row becomes a Product.

The real archive's rows repeat and carry masked (null) cells anywhere. A row (an
astropy Row or any mapping) becomes a :class:`~hstsync.model.Product`, and whatever is
wrong with one row becomes that product's ``problem``, never an exception that loses
the whole request. :func:`products_from_rows` also collapses repeated dataURIs and
gives each destination path one owner (twins), within one table and, through
:class:`Claims`, across the batches of one resolution. Reading each cell (sizes,
nulls, text that is not valid Unicode) is :mod:`hstsync.archive.cells`'s. Pure, and no
astroquery here: ``products`` asks the archive and hands its table over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from hstsync.archive.cells import (
    TEXT_COLUMNS,
    calib_level,
    cell,
    parse_size,
    shown,
    table_rows,
    text_cell,
)
from hstsync.archive.seen import Seen
from hstsync.errors import CatalogueValueError
from hstsync.model import Product, relpath_or_none

log = logging.getLogger(__name__)

#: the columns a file's path is made of: a missing cell is the product's problem
_REQUIRED = ("obs_collection", "obs_id", "productFilename")


def product_from_row(row: Any) -> Product:
    """One row of a products table → :class:`Product`; never raises.

    Whatever makes this one row unusable is the product's ``problem``: a size that is
    not a whole number of bytes, a missing obs_id or file name, text that is not valid
    Unicode. A missing size is not a problem (None: fetched, the server's size counts);
    a missing ``dataRights`` is "" (unknown, fetched as public). A masked cell never
    becomes the text ``--`` or ``None``.
    """
    problems: list[str] = []
    texts = {column: text_cell(row, column, problems) for column in TEXT_COLUMNS}
    if not texts["dataURI"].isprintable():
        # it is sent as a query parameter and shown in tables and logs: refused
        problems.append(
            f"refused: the catalogue's dataURI holds control characters: {shown(texts['dataURI'])}"
        )
    for column in _REQUIRED:
        if not texts[column]:
            problems.insert(0, f"the catalogue gives no {column} for this file")
    try:
        size = parse_size(cell(row, "size"))
    except CatalogueValueError as exc:
        size = None
        problems.insert(0, str(exc))
    return Product(
        data_uri=texts["dataURI"],
        obs_collection=texts["obs_collection"],
        obs_id=texts["obs_id"],
        filename=texts["productFilename"],
        size=size,
        obsid=texts["obsID"],
        product_type=texts["productType"],
        calib_level=calib_level(row),
        data_rights=texts["dataRights"],
        description=texts["description"],
        problem=problems[0] if problems else None,
        # where the archive fills it (JWST): a new one is a new version of the file
        prvversion=text_cell(row, "prvversion", []),
    )


@dataclass
class Claims:
    """What the batches of one resolution have already given out: dataURIs and paths.

    A big program is resolved in batches of observations (``paging.OBSID_BATCH``), and
    a product can be listed again in a later batch (HAP and association products belong
    to many observations). Each batch's products are passed on (recorded, planned,
    fetched) before the next batch is asked for, so the list as a whole is never held:
    only a digest of each dataURI and path (:class:`Seen`, 16 bytes each).
    """

    _uris: Seen = field(default_factory=Seen)
    #: dataURIs given out with a problem: a later row of the same dataURI may be usable
    _flawed: set[str] = field(default_factory=set)
    _paths: Seen = field(default_factory=Seen)

    def take(self, products: list[Product]) -> list[Product]:
        """``products`` (one batch, repeats already collapsed) less what earlier
        batches gave out; a path an earlier batch owns makes a later claimant fail."""
        fresh: list[Product] = []
        for product in products:
            uri = product.data_uri
            if not self._uris.add(uri):
                if uri not in self._flawed or product.problem is not None:
                    continue  # a repeat: the first usable row stands
                self._flawed.discard(uri)  # a usable row for a product first listed flawed
            if product.problem is not None:
                self._flawed.add(uri)
            elif (path := relpath_or_none(product)) is not None and not self._paths.add(str(path)):
                product = replace(
                    product,
                    problem=f"another product listed earlier has the same path {path}; "
                    "only that one is fetched",
                )
            fresh.append(product)
        return fresh


def products_from_rows(rows: Iterable[Any], claims: Claims | None = None) -> list[Product]:
    """Catalogue rows → products: one per dataURI, one owner per path. Pure.

    Repeats (the same dataURI listed again, as HAP and association rows do) collapse
    to the first usable row, the one astroquery itself would keep. Rows without a
    dataURI cannot be named or fetched and are left out (logged). Twins, rows with
    different dataURIs that would land on the same path, get one owner (see
    :func:`_claim_paths`); the others fail with a reason and are never written.
    An astropy table is read column by column (:func:`table_rows`).
    With ``claims``, the rows are one batch of a bigger list: what earlier batches
    gave out is left out or, for a path, kept by its first owner (:class:`Claims`).
    """
    if hasattr(rows, "colnames"):  # an astropy table: read column by column
        rows = table_rows(rows)
    chosen: dict[str, Product] = {}
    nameless = 0
    for row in rows:
        product = product_from_row(row)
        if not product.data_uri:
            nameless += 1
            continue
        held = chosen.get(product.data_uri)
        if held is None or (held.problem is not None and product.problem is None):
            chosen[product.data_uri] = product
    if nameless:
        log.warning("%d catalogue rows have no dataURI and are left out", nameless)
    claimed = _claim_paths(list(chosen.values()))
    return claimed if claims is None else claims.take(claimed)


def _claim_paths(products: list[Product]) -> list[Product]:
    """One product per destination path; the others get a ``problem``.

    The owner is the product whose dataURI is the archive's own for its file
    (``mast:<obs_collection>/product/<productFilename>``), then one whose dataURI ends
    in ``/<productFilename>``, then the first by dataURI: the same one every pass, so a
    path's content never swaps between two files, and a made-up row whose dataURI
    merely ends in another product's file name never takes that product's path.
    """
    by_path: dict[PurePosixPath, list[Product]] = {}
    for product in products:
        if product.problem is None and (path := relpath_or_none(product)) is not None:
            by_path.setdefault(path, []).append(product)
    losers: dict[str, Product] = {}
    for path, claimants in by_path.items():
        if len(claimants) < 2:
            continue
        owner = min(claimants, key=_ownership)
        for other in claimants:
            if other is not owner:
                losers[other.data_uri] = replace(
                    other,
                    problem=f"another product ({owner.data_uri}) has the same path {path}; "
                    "only that one is fetched",
                )
    return [losers.get(p.data_uri, p) for p in products]


def _ownership(product: Product) -> tuple[int, str]:
    """How well a dataURI names its product's own file (lower first; see _claim_paths)."""
    uri = product.data_uri
    if uri == f"mast:{product.obs_collection}/product/{product.filename}":
        return 0, uri
    return (1 if uri.endswith("/" + product.filename) else 2), uri
