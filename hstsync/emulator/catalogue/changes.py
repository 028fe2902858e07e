"""The archive changing its mind about a file: reprocessed, withdrawn, restored, removed.

:class:`CatalogueChanges` does to a product what the real archive does to files
after they were listed, which a mirror has to notice: :meth:`~CatalogueChanges.reprocess`
gives it new bytes under the same name and dataURI (the next generation, with a new
``CAL_VER`` when new software did it), :meth:`~CatalogueChanges.withdraw` takes it off
every product list (served still, or not), :meth:`~CatalogueChanges.restore` lists it
again, and :meth:`~CatalogueChanges.remove_product` forgets it. The admin calls of
:mod:`hstsync.emulator.server.admin` reach the first three from another process.
Every method takes the lock.
"""

from __future__ import annotations

import time

from hstsync.emulator.catalogue.index import CatalogueIndex
from hstsync.emulator.catalogue.records import CatalogueProduct


class CatalogueChanges(CatalogueIndex):
    """Reprocesses, withdraws, restores and removes the products the index holds
    (:class:`~hstsync.emulator.catalogue.Catalogue` is built on it)."""

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
        """Forget product ``key`` (dataURI or filename): off every list it was on, its
        own observation's and the repeat listings, and no longer found by any lookup."""
        with self._lock:
            product = self.product(key)
            if product is None:
                raise KeyError(f"no product {key!r}")
            del self._by_uri[product.data_uri]
            self._by_obsid[product.obsid].products.remove(product)
            for obs in self._observations:
                obs.listings = [(p, c) for p, c in obs.listings if p is not product]


def _next_version(version: str) -> str:
    """``1.12.5`` -> ``1.12.6``: the last number up by one (``.1`` added if none)."""
    head, dot, last = version.rpartition(".")
    if dot and last.isdigit():
        return f"{head}.{int(last) + 1}"
    return f"{version}.1"
