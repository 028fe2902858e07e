"""A MAST stand-in for tests, the demo and benchmarks: no network, real HTTP.

:class:`Emulator` is a real aiohttp server on 127.0.0.1 that unmodified
``astroquery.mast`` and hstsync's downloader talk to. It serves a
:class:`Catalogue` (by default :func:`default_catalogue`, the tutorial's proposal
7291), deterministic FITS bodies, and failures injected as :class:`Fault` s.
"""

from hstsync.emulator.catalogue import (
    EXCLUSIVE_ACCESS,
    PUBLIC,
    Catalogue,
    CatalogueProduct,
    Observation,
    default_catalogue,
)
from hstsync.emulator.faults import Fault, FaultKind, Faults
from hstsync.emulator.server import Emulator, RecordedRequest, run_in_thread

__all__ = [
    "EXCLUSIVE_ACCESS",
    "PUBLIC",
    "Catalogue",
    "CatalogueProduct",
    "Emulator",
    "Fault",
    "FaultKind",
    "Faults",
    "Observation",
    "RecordedRequest",
    "default_catalogue",
    "run_in_thread",
]
