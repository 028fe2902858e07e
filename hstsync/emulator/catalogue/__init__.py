"""The emulator's archive contents: observations and products, as plain data.

Owns what MAST *knows*: CAOM observation rows, the products of each observation,
and how the portal's filters select among them. :func:`default_catalogue` holds
proposal 7291 exactly as the tutorial shows it; tests and benchmarks grow a
catalogue with :meth:`Catalogue.add_program`, :meth:`Catalogue.add_product` and
change it with :meth:`Catalogue.update_product` / :meth:`Catalogue.set_data_rights`
/ :meth:`Catalogue.reprocess` / :meth:`Catalogue.withdraw` while the server runs
(every method takes the catalogue's lock, so a test thread may change it while the
server thread reads it).

It also keeps the real archive's habits (:mod:`hstsync.emulator.quirks`): a
product's catalogue cells that differ from the truth (``cells``: null, float or
string sizes, a wrong size, null rights), its serving quirks (``chunked``,
``ranges``, ``style``, ``redirect``), products listed again under other
observations (:meth:`Catalogue.list_under`), and a program's portal quirks
(:meth:`Catalogue.set_portal_quirks`). The default catalogue also holds the
realistic program of :mod:`hstsync.emulator.realistic` and the JWST program of
:mod:`hstsync.emulator.jwst`; :meth:`Catalogue.add_jwst_program` builds synthetic
JWST programs (:mod:`~hstsync.emulator.catalogue.jwst_programs`).
"""

from hstsync.emulator.catalogue.building import CatalogueBuilder
from hstsync.emulator.catalogue.changes import CatalogueChanges
from hstsync.emulator.catalogue.edits import CatalogueEdits
from hstsync.emulator.catalogue.index import CatalogueIndex
from hstsync.emulator.catalogue.programs import add_tutorial_program
from hstsync.emulator.catalogue.records import (
    EXCLUSIVE_ACCESS,
    MRP,
    PUBLIC,
    CatalogueProduct,
    Observation,
    Row,
)

__all__ = [
    "EXCLUSIVE_ACCESS",
    "MRP",
    "PUBLIC",
    "Catalogue",
    "CatalogueBuilder",
    "CatalogueChanges",
    "CatalogueEdits",
    "CatalogueIndex",
    "CatalogueProduct",
    "Observation",
    "Row",
    "default_catalogue",
]


class Catalogue(CatalogueBuilder, CatalogueEdits, CatalogueChanges):
    """The archive's contents, every side of them on one object, one lock.

    Read by the server (:class:`CatalogueIndex`: queries, product lists, lookups by
    obsid, obs_id and dataURI), grown by tests and benchmarks
    (:class:`~hstsync.emulator.catalogue.building.CatalogueBuilder`:
    :meth:`add_observation`, :meth:`add_product`, :meth:`list_under`,
    :meth:`add_program`, :meth:`add_jwst_program`), set to the state a test needs
    (:class:`~hstsync.emulator.catalogue.edits.CatalogueEdits`:
    :meth:`set_portal_quirks`, :meth:`set_product_quirks`, :meth:`update_observation`,
    :meth:`update_product`, :meth:`set_data_rights`) and changed as the archive changes
    its mind (:class:`~hstsync.emulator.catalogue.changes.CatalogueChanges`:
    :meth:`reprocess`, :meth:`withdraw`, :meth:`restore`, :meth:`remove_product`).
    """


def default_catalogue(*, jwst_cloud: bool = False) -> Catalogue:
    """Proposal 7291 as the tutorial shows it: five observations, 15 products for each
    spectrum (so the first two give the tutorial's 30), four for each CCD image; the
    realistic program (:data:`hstsync.emulator.realistic.PROPOSAL_ID`) with every
    data habit of the real archive at once; and the JWST program
    (:data:`hstsync.emulator.jwst.PROPOSAL_ID`, ``"01345"``).

    The JWST program's files are in the public bucket only with ``jwst_cloud``: the
    default keeps every bucket key of this catalogue in the HST layout, the only one
    hstsync's cloud source knows so far (``docs/emulator.md``)."""
    # imported here: realistic.py and jwst.py build on this package's Catalogue
    from hstsync.emulator.jwst import add_jwst_program
    from hstsync.emulator.realistic import add_realistic_program

    cat = Catalogue()
    add_tutorial_program(cat)
    add_realistic_program(cat)
    add_jwst_program(cat, cloud=jwst_cloud)
    return cat
