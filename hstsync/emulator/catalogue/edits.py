"""The catalogue's cells and habits, set directly by tests while the server runs.

:class:`CatalogueEdits` changes what is already there, as a test needs it to be: a
program's portal quirks (:meth:`~CatalogueEdits.set_portal_quirks`), the product
quirks of every product whose name matches (:meth:`~CatalogueEdits.set_product_quirks`),
the CAOM cells of an observation (:meth:`~CatalogueEdits.update_observation`, e.g. a
planned JWST observation executed), a product's size, rights or type
(:meth:`~CatalogueEdits.update_product`), and a whole program's rights
(:meth:`~CatalogueEdits.set_data_rights`). The archive changing its mind about a
file is :mod:`hstsync.emulator.catalogue.changes`. Every method takes the lock.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from typing import Any

from hstsync.emulator.catalogue.index import CatalogueIndex
from hstsync.emulator.catalogue.records import CatalogueProduct, Observation
from hstsync.emulator.quirks import BodyStyle, PortalQuirks


class CatalogueEdits(CatalogueIndex):
    """Sets the cells and habits of the observations and products the index holds
    (:class:`~hstsync.emulator.catalogue.Catalogue` is built on it)."""

    def set_portal_quirks(self, proposal_id: str | int, quirks: PortalQuirks | None) -> None:
        """How the portal answers queries whose rows belong to this program (None: plainly)."""
        with self._lock:
            if quirks is None:
                self._portal_quirks.pop(str(proposal_id), None)
            else:
                self._portal_quirks[str(proposal_id)] = quirks

    def set_product_quirks(
        self,
        pattern: str,
        *,
        cells: Mapping[str, Any] | None = None,
        chunked: bool | None = None,
        ranges: bool | None = None,
        style: BodyStyle | str | None = None,
        redirect: bool | None = None,
        cloud: bool | None = None,
        validators: bool | None = None,
    ) -> list[CatalogueProduct]:
        """Give every product whose productFilename matches ``pattern`` (fnmatch) these
        quirks (None: unchanged; ``cells`` are added to its own); the products changed."""
        with self._lock:
            chosen = [p for p in self._by_uri.values() if fnmatch.fnmatchcase(p.filename, pattern)]
            for product in chosen:
                product.cells.update(cells or {})
                if chunked is not None:
                    product.chunked = chunked
                if ranges is not None:
                    product.ranges = ranges
                if style is not None:
                    product.style = BodyStyle(style)
                if redirect is not None:
                    product.redirect = redirect
                if cloud is not None:
                    product.cloud = cloud
                if validators is not None:
                    product.validators = validators
            return chosen

    def update_observation(self, obs_id: str, **fields: Any) -> Observation:
        """Change CAOM cells of a live observation (its obsid and obs_id stay): a
        planned JWST observation executed is ``calib_level=3`` with times
        (``t_min``, ``t_max``, ``t_exptime``, ``t_obs_release``); its files are then
        added with :meth:`Catalogue.add_product`."""
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            if obs is None:
                raise KeyError(f"no observation {obs_id!r}")
            unknown = set(fields) - set(obs.fields) | set(fields) & {"obsid", "obs_id"}
            if unknown:
                raise ValueError(f"cannot set CAOM columns: {', '.join(sorted(unknown))}")
            obs.fields.update(fields)
            return obs

    def update_product(
        self,
        key: str,
        *,
        size: int | None = None,
        data_rights: str | None = None,
        product_type: str | None = None,
        calib_level: int | None = None,
    ) -> CatalogueProduct:
        """Change a live product (by dataURI or filename): a new size is a new body."""
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            if size is not None:
                product.size = int(size)
            if data_rights is not None:
                product.data_rights = data_rights
            if product_type is not None:
                product.product_type = product_type
            if calib_level is not None:
                product.calib_level = calib_level
            product.version += 1
            product.modified = max(time.time(), product.modified + 1)
            return product

    def set_data_rights(self, proposal_id: str | int, data_rights: str) -> None:
        """Make a whole program public or exclusive (observations and products)."""
        with self._lock:
            for obs in self._observations:
                if obs.fields["proposal_id"] == str(proposal_id):
                    obs.fields["dataRights"] = data_rights
                    for product in obs.products:
                        product.data_rights = data_rights
                        product.version += 1
