"""The catalogue's reading side: its tables, its lock, and every lookup the server makes.

:class:`CatalogueIndex` holds observations in query order, their products and the
indexes by obsid, obs_id and dataURI, and answers the portal's queries (through
:mod:`hstsync.emulator.catalogue.filtering`) and the downloads' lookups. Every
method takes the lock, so a test thread may change the catalogue while the server
thread reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hstsync.emulator.catalogue.filtering import select
from hstsync.emulator.catalogue.records import CatalogueProduct, Observation, Row
from hstsync.emulator.quirks import PortalQuirks


class CatalogueIndex:
    """Observations in query order, their products, and the indexes that find them;
    every read takes the lock. :class:`~hstsync.emulator.catalogue.Catalogue` adds
    the writing side."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._observations: list[Observation] = []
        self._by_obs_id: dict[str, Observation] = {}
        self._by_obsid: dict[str, Observation] = {}
        self._by_uri: dict[str, CatalogueProduct] = {}
        self._portal_quirks: dict[str, PortalQuirks] = {}
        self._next_obsid = 30_000_000
        #: how a ``proposal_id`` criterion matches: ``"exact"`` (the stored string:
        #: ``"1345"`` does not find ``"01345"``) or ``"numeric"`` (digits compared as
        #: numbers); may change while running
        self.proposal_id_match = "exact"

    # -- reading ---------------------------------------------------------------------

    def observations(self) -> list[Observation]:
        with self._lock:
            return list(self._observations)

    def products(self) -> list[CatalogueProduct]:
        """Every listed product once (repeat listings are not products of their own;
        withdrawn ones are not listed)."""
        with self._lock:
            return [p for o in self._observations for p in o.products if not p.withdrawn]

    def program_products(self, proposal_id: str | int) -> list[CatalogueProduct]:
        """The listed products owned by a program's observations, each once."""
        with self._lock:
            return [
                p
                for o in self._observations
                if o.fields["proposal_id"] == str(proposal_id)
                for p in o.products
                if not p.withdrawn
            ]

    def withdrawn(self) -> list[CatalogueProduct]:
        """The products no product list shows any more (:meth:`Catalogue.withdraw`)."""
        with self._lock:
            return [p for o in self._observations for p in o.products if p.withdrawn]

    def product(self, key: str) -> CatalogueProduct | None:
        """The product with this dataURI (or, failing that, this productFilename)."""
        with self._lock:
            found = self._by_uri.get(key)
            if found is None:
                found = next((p for p in self._by_uri.values() if p.filename == key), None)
            return found

    def cloud_product(self, key: str) -> CatalogueProduct | None:
        """The product the bucket keeps under ``key``, whatever its rights, or None
        (a withdrawn product stays in the bucket while it is still served)."""
        filename = key.rpartition("/")[2]
        with self._lock:
            for mission in ("HST", "JWST"):
                found = self._by_uri.get(f"mast:{mission}/product/{filename}")
                if found is not None and found.served and found.cloud_key == key:
                    return found
        return None

    def query(
        self, filters: Sequence[Mapping[str, Any]], position: tuple[float, float, float] | None
    ) -> list[Row]:
        """The rows ``Mast.Caom.Filtered`` (``.Position``) answers, in catalogue order."""
        with self._lock:
            rows = [o.row() for o in self._observations]
        return select(rows, filters, position, numeric_ids=self.proposal_id_match == "numeric")

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
                rows.extend(p.row() for p in obs.products if not p.withdrawn)
                for product, cells in obs.listings:
                    if product.withdrawn:
                        continue
                    # listed here, owned there: obsID is this one, parent_obsid the owner
                    row = product.row()
                    row.update(obsID=obs.obsid, parent_obsid=product.obsid)
                    row.update(cells)
                    rows.append(row)
        return rows

    # -- quirks of the portal ------------------------------------------------------------

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
