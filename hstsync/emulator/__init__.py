"""A MAST stand-in for tests, the demo and benchmarks: no network, real HTTP.

:class:`Emulator` is a real aiohttp server on 127.0.0.1 that unmodified
``astroquery.mast`` and hstsync's downloader talk to. It serves a
:class:`Catalogue` (by default :func:`default_catalogue`: the tutorial's proposal
7291, the realistic program :data:`REALISTIC_PROPOSAL` with the real archive's
habits, and the JWST program :data:`JWST_PROPOSAL`), deterministic FITS bodies,
failures injected as :class:`Fault` s, and the archive's habits switched on with
:class:`PortalQuirks` and product quirks (:mod:`hstsync.emulator.quirks`; the table
is in ``docs/emulator.md``). The archive changes its mind too:
:meth:`Catalogue.reprocess`, :meth:`Catalogue.withdraw`, validators switched off
(``Emulator(validators=False)``), and the admin calls of
:mod:`hstsync.emulator.server.admin` for an emulator in another process. :func:`main`
is ``hstsync emulator``.
"""

from hstsync.emulator.catalogue import (
    EXCLUSIVE_ACCESS,
    PUBLIC,
    Catalogue,
    CatalogueProduct,
    Observation,
    default_catalogue,
)
from hstsync.emulator.cli import main
from hstsync.emulator.faults import Fault, FaultKind, Faults
from hstsync.emulator.jwst import PROPOSAL_ID as JWST_PROPOSAL
from hstsync.emulator.jwst import add_jwst_program
from hstsync.emulator.jwst import expected_products as jwst_expected_products
from hstsync.emulator.quirks import BodyStyle, PortalQuirks
from hstsync.emulator.realistic import PROPOSAL_ID as REALISTIC_PROPOSAL
from hstsync.emulator.realistic import ExpectedProduct, expected_products
from hstsync.emulator.server import Emulator, RecordedRequest, run_in_thread

__all__ = [
    "EXCLUSIVE_ACCESS",
    "JWST_PROPOSAL",
    "PUBLIC",
    "REALISTIC_PROPOSAL",
    "BodyStyle",
    "Catalogue",
    "CatalogueProduct",
    "Emulator",
    "ExpectedProduct",
    "Fault",
    "FaultKind",
    "Faults",
    "Observation",
    "PortalQuirks",
    "RecordedRequest",
    "add_jwst_program",
    "default_catalogue",
    "expected_products",
    "jwst_expected_products",
    "main",
    "run_in_thread",
]
