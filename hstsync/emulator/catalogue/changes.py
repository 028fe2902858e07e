"""The catalogue's writing side: growing it and changing it while the server runs.

:class:`Catalogue` is a :class:`~hstsync.emulator.catalogue.index.CatalogueIndex`
that tests and benchmarks grow (:meth:`Catalogue.add_observation`,
:meth:`Catalogue.add_product`, :meth:`Catalogue.add_program`), give the real
archive's habits (:meth:`Catalogue.set_product_quirks`, :meth:`Catalogue.list_under`,
:meth:`Catalogue.set_portal_quirks`) and change live
(:meth:`Catalogue.update_product`, :meth:`Catalogue.update_observation`,
:meth:`Catalogue.set_data_rights`, and as the archive changes its mind:
:meth:`Catalogue.reprocess`, :meth:`Catalogue.withdraw`).
Every method takes the lock.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from typing import Any

from hstsync.emulator.catalogue.index import CatalogueIndex
from hstsync.emulator.catalogue.jwst_programs import add_synthetic_jwst_program
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
        validators: bool = True,
        cloud_path: str | None = None,
        prvversion: str | None = None,
        cal_ver: str | None = None,
    ) -> CatalogueProduct:
        """Add a product to observation ``obs_id``; rights default to the observation's.

        ``data_uri`` replaces the usual ``mast:<obs_collection>/product/<filename>``
        (for tests of catalogue rows whose URI and filename disagree).
        ``product_obs_id`` is the product's own ``obs_id`` when it differs from its
        observation's (its mirror path and HST bucket key follow it). ``cloud_path``
        is its bucket key when the HST layout does not give it (JWST); ``prvversion``
        its catalogue cell (default: the observation's ``provenance_name``);
        ``cal_ver`` the ``CAL_VER`` its FITS header carries, with ``DATE`` and
        reference files (default: none of them, the original bodies). The other
        keywords are the product quirks of :mod:`hstsync.emulator.quirks`.
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
                prvversion=prvversion
                if prvversion is not None
                else (str(f["provenance_name"]) if f["provenance_name"] else None),
                uri=data_uri,
                cells=dict(cells or {}),
                chunked=chunked,
                ranges=ranges,
                style=BodyStyle(style),
                redirect=redirect,
                cloud=cloud,
                cloud_path=cloud_path,
                project=str(f["project"] or "HST"),
                validators=validators,
                cal_ver=cal_ver,
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
        added with :meth:`add_product`."""
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

    def reprocess(
        self, key: str, *, size: int | None = None, software: bool = True
    ) -> CatalogueProduct:
        """The archive reprocesses product ``key`` (dataURI or filename): same name,
        same dataURI, new bytes, the same size unless ``size`` is given.

        The body is the next generation: other data, a later ``DATE``, other
        reference files in its FITS header (and checksums valid again where its style
        has them); a JPEG or text body gets other bytes too. The earlier generation is
        no longer served (``Emulator.body(uri, generation=N)`` still computes it).
        ``software`` says a new calibration software did it: ``CAL_VER`` goes up and,
        for JWST, ``prvversion`` with it; False is a reprocessing for new reference
        files only, which ``prvversion`` does not show (jwst_mast_query#20). The ETag
        and Last-Modified change as with any change.
        """
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            product.past[product.generation] = (product.size, product.style, product.cal_ver)
            product.generation += 1
            cal_ver = product.cal_ver or "1.0.0"
            if software:
                cal_ver = _next_version(cal_ver)
                if product.obs_collection.upper() == "JWST":
                    product.prvversion = cal_ver
            product.cal_ver = cal_ver
            if size is not None:
                product.size = int(size)
            product.version += 1
            product.modified = max(time.time(), product.modified + 1)
            return product

    def withdraw(self, key: str, *, served: bool = True) -> CatalogueProduct:
        """Product ``key`` (dataURI or filename) disappears from every product list
        (its own observation's and every repeat listing); ``served`` says whether its
        file can still be downloaded (the archive often still serves it) or answers
        404 (the bucket too). :meth:`restore` lists it again."""
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            product.withdrawn = True
            product.served_when_withdrawn = served
            return product

    def restore(self, key: str) -> CatalogueProduct:
        """List a withdrawn product again, as it was."""
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            product.withdrawn = False
            product.served_when_withdrawn = True
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

    def add_jwst_program(
        self,
        proposal_id: str | int,
        *,
        observations: int,
        per_level3: int = 100,
        repeats: int = 1,
        guide_stars: int = 10,
        size: int = 5760,
        level3_size: int | None = None,
        data_rights: str = PUBLIC,
    ) -> list[CatalogueProduct]:
        """A deterministic synthetic JWST program (for benchmarks): ``observations``
        exposure-level observations (two exposures on two NIRCam detectors a visit),
        grouped ``per_level3`` to a level-3 observation, with the archive's JWST habits.

        The proposal id is kept as five digits (``1345`` -> ``"01345"``). Each exposure
        has ``_uncal``, ``_rate`` and ``_cal`` files of ``size`` bytes; each visit
        ``guide_stars`` guide-star files listed under its four exposures; each level-3
        observation ``_i2d`` (``level3_size``, default ``size``), ``_segm``,
        ``_cat.ecsv``, a preview and an ``_asn.json``, listed ``repeats`` times under
        every member, whose files it lists ``repeats`` times too. Public files are in
        the bucket (``jwst/public/...``). The products made, each once.
        """
        with self._lock:
            return add_synthetic_jwst_program(
                self,
                proposal_id,
                observations=observations,
                per_level3=per_level3,
                repeats=repeats,
                guide_stars=guide_stars,
                size=size,
                level3_size=level3_size,
                data_rights=data_rights,
            )

    def _allocate_obsid(self) -> int:
        while str(self._next_obsid) in self._by_obsid:
            self._next_obsid += 1
        self._next_obsid += 1
        return self._next_obsid - 1


def _next_version(version: str) -> str:
    """``1.12.5`` -> ``1.12.6``: the last number up by one (``.1`` added if none)."""
    head, dot, last = version.rpartition(".")
    if dot and last.isdigit():
        return f"{head}.{int(last) + 1}"
    return f"{version}.1"
