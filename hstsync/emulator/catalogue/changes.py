"""The catalogue's writing side: growing it and changing it while the server runs.

:class:`Catalogue` is a :class:`~hstsync.emulator.catalogue.index.CatalogueIndex`
that tests and benchmarks grow (:meth:`Catalogue.add_observation`,
:meth:`Catalogue.add_product`, :meth:`Catalogue.add_program`), give the real
archive's habits (:meth:`Catalogue.set_product_quirks`, :meth:`Catalogue.list_under`,
:meth:`Catalogue.set_portal_quirks`) and change live
(:meth:`Catalogue.update_product`, :meth:`Catalogue.set_data_rights`). Every method
takes the lock.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from typing import Any

from hstsync.emulator.catalogue.index import CatalogueIndex
from hstsync.emulator.catalogue.programs import add_synthetic_program
from hstsync.emulator.catalogue.records import (
    PUBLIC,
    CatalogueProduct,
    Observation,
    Row,
    describe,
    subgroup_of,
)
from hstsync.emulator.columns import CAOM_COLUMNS
from hstsync.emulator.quirks import BodyStyle, PortalQuirks


class Catalogue(CatalogueIndex):
    """The archive's contents, grown and changed by tests (the lookups are the index's)."""

    # -- quirks of the portal ------------------------------------------------------------

    def set_portal_quirks(self, proposal_id: str | int, quirks: PortalQuirks | None) -> None:
        """How the portal answers queries whose rows belong to this program (None: plainly)."""
        with self._lock:
            if quirks is None:
                self._portal_quirks.pop(str(proposal_id), None)
            else:
                self._portal_quirks[str(proposal_id)] = quirks

    # -- growing ---------------------------------------------------------------------

    def add_observation(self, **fields: Any) -> Observation:
        """Add a CAOM row; missing columns are None, ``obsid`` is allocated if absent."""
        with self._lock:
            if "obsid" not in fields:
                fields["obsid"] = str(self._allocate_obsid())
            row: Row = {name: fields.pop(name, None) for name, _, _, _ in CAOM_COLUMNS}
            if fields:
                raise ValueError(f"unknown CAOM columns: {', '.join(sorted(fields))}")
            row["obsid"] = str(row["obsid"])
            row["proposal_id"] = str(row["proposal_id"])
            obs = Observation(row)
            if obs.obs_id in self._by_obs_id or obs.obsid in self._by_obsid:
                raise ValueError(f"observation {obs.obs_id} ({obs.obsid}) already exists")
            self._observations.append(obs)
            self._by_obs_id[obs.obs_id] = obs
            self._by_obsid[obs.obsid] = obs
            return obs

    def add_product(
        self,
        obs_id: str,
        filename: str,
        size: int,
        *,
        product_type: str = "SCIENCE",
        calib_level: int = 2,
        data_rights: str | None = None,
        description: str | None = None,
        group: str | None = None,
        subgroup: str | None = None,
        data_uri: str | None = None,
        product_obs_id: str | None = None,
        cells: Mapping[str, Any] | None = None,
        chunked: bool = False,
        ranges: bool = True,
        style: BodyStyle | str = BodyStyle.FITS,
        redirect: bool = False,
        cloud: bool = True,
    ) -> CatalogueProduct:
        """Add a product to observation ``obs_id``; rights default to the observation's.

        ``data_uri`` replaces the usual ``mast:HST/product/<filename>`` (for tests
        of catalogue rows whose URI and filename disagree). ``product_obs_id`` is the
        product's own ``obs_id`` when it differs from its observation's (its mirror
        path and bucket key follow it). The other keywords are the product quirks of
        :mod:`hstsync.emulator.quirks`.
        """
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            if obs is None:
                raise KeyError(f"no observation {obs_id!r}")
            f = obs.fields
            product = CatalogueProduct(
                obsid=obs.obsid,
                obs_id=product_obs_id or obs.obs_id,
                filename=filename,
                size=int(size),
                product_type=product_type,
                calib_level=calib_level,
                data_rights=data_rights or str(f["dataRights"] or PUBLIC),
                description=description or describe(filename, f),
                group=group,
                subgroup=subgroup if subgroup is not None else subgroup_of(filename),
                obs_collection=str(f["obs_collection"] or "HST"),
                dataproduct_type=str(f["dataproduct_type"] or "image"),
                proposal_id=str(f["proposal_id"] or ""),
                filters=str(f["filters"] or ""),
                prvversion=str(f["provenance_name"]) if f["provenance_name"] else None,
                uri=data_uri,
                cells=dict(cells or {}),
                chunked=chunked,
                ranges=ranges,
                style=BodyStyle(style),
                redirect=redirect,
                cloud=cloud,
            )
            if product.data_uri in self._by_uri:
                raise ValueError(f"product {product.data_uri} already exists")
            obs.products.append(product)
            self._by_uri[product.data_uri] = product
            return product

    def list_under(self, obs_id: str, key: str, **cells: Any) -> None:
        """List product ``key`` (dataURI or filename) again under observation ``obs_id``,
        as MAST's association and HAP rows list their members' files; ``cells``
        change that row only (e.g. ``obs_id=...``)."""
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            product = self.product(key)
            if obs is None or product is None:
                raise KeyError(f"no observation {obs_id!r} or no product {key!r}")
            obs.listings.append((product, dict(cells)))

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
            return chosen

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

    def remove_product(self, key: str) -> None:
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            del self._by_uri[product.data_uri]
            self._by_obsid[product.obsid].products.remove(product)
            for obs in self._observations:
                obs.listings = [(p, c) for p, c in obs.listings if p is not product]

    def set_data_rights(self, proposal_id: str | int, data_rights: str) -> None:
        """Make a whole program public or exclusive (observations and products)."""
        with self._lock:
            for obs in self._observations:
                if obs.fields["proposal_id"] == str(proposal_id):
                    obs.fields["dataRights"] = data_rights
                    for product in obs.products:
                        product.data_rights = data_rights
                        product.version += 1

    def add_program(
        self,
        proposal_id: str | int,
        *,
        files: int,
        size: int,
        data_rights: str = PUBLIC,
        instrument: str = "WFC3/UVIS",
        per_observation: int = 4,
    ) -> list[CatalogueProduct]:
        """A deterministic synthetic program: ``files`` products of ``size`` bytes each.

        Products are spread ``per_observation`` (at most 8) to an observation; each is
        a calib_level 2 SCIENCE "Minimum Recommended Products" FITS file, so the
        tutorial's filters select all of them.
        """
        with self._lock:
            return add_synthetic_program(
                self,
                proposal_id,
                files=files,
                size=size,
                data_rights=data_rights,
                instrument=instrument,
                per_observation=per_observation,
            )

    def _allocate_obsid(self) -> int:
        while str(self._next_obsid) in self._by_obsid:
            self._next_obsid += 1
        self._next_obsid += 1
        return self._next_obsid - 1
