"""The catalogue's growing side: observations, products and whole programs added.

:class:`CatalogueBuilder` is what tests, benchmarks and the program builders add to
the catalogue with: a CAOM observation (:meth:`~CatalogueBuilder.add_observation`,
its obsid allocated when not given), a product of one
(:meth:`~CatalogueBuilder.add_product`, with the product quirks of
:mod:`hstsync.emulator.quirks`), a product listed again under another observation
as MAST's association, HAP and JWST level-3 rows do
(:meth:`~CatalogueBuilder.list_under`), and whole synthetic programs
(:meth:`~CatalogueBuilder.add_program`, :meth:`~CatalogueBuilder.add_jwst_program`,
made by :mod:`~hstsync.emulator.catalogue.programs` and
:mod:`~hstsync.emulator.catalogue.jwst_programs` out of the calls above). Adding
never changes what is there: a second observation or product of the same name is
refused. Every method takes the lock.
"""

from __future__ import annotations

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
from hstsync.emulator.quirks import BodyStyle


class CatalogueBuilder(CatalogueIndex):
    """Adds observations, products, repeat listings and synthetic programs to the
    index (:class:`~hstsync.emulator.catalogue.Catalogue` is built on it)."""

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
        change that row only (e.g. ``description="..."``)."""
        with self._lock:
            obs = self._by_obs_id.get(obs_id)
            product = self.product(key)
            if obs is None or product is None:
                raise KeyError(f"no observation {obs_id!r} or no product {key!r}")
            obs.listings.append((product, dict(cells)))

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
