"""Product lists: one batch of obsids' table, and the products selected from tables.

``get_product_list`` is asked for one batch of obsids at a time (which obsids, and
in halves after a failure, is :class:`~hstsync.archive.paging.Batcher`'s to say);
``filter_products`` then applies the request's filters, and the rows become Products at
the one boundary, :func:`~hstsync.archive.rows.products_from_rows`. A size the client
took out of the portal's answer (:attr:`~hstsync.archive.client.Client.unusable`) is
that product's problem. Blocking, like every call through the
:class:`~hstsync.archive.client.Client`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from hstsync.archive.client import Client
from hstsync.archive.rows import Claims, products_from_rows
from hstsync.archive.selection import Sieve
from hstsync.model import Product, Request

log = logging.getLogger(__name__)


def product_list(client: Client, obsids: list[str]) -> Any:
    """The products table of one batch of obsids (``get_product_list``). Blocking."""
    with client.translated(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return client.obs.get_product_list(obsids)


def select_products(
    client: Client,
    request: Request,
    tables: Iterable[Any],
    claims: Claims | None = None,
    sieve: Sieve | None = None,
) -> list[Product]:
    """``filter_products`` over the batches' tables, then rows → products.

    ``claims``: the tables are part of a bigger list, resolved batch by batch
    (:class:`~hstsync.archive.rows.Claims`); what earlier batches gave out is left
    out. ``sieve`` is told what the filters kept.
    """
    from astropy.table import vstack

    filled = [t for t in tables if len(t)]
    if not filled:
        return []
    with client.translated(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        products = vstack(filled) if len(filled) > 1 else filled[0]
        filtered = client.obs.filter_products(products, **dict(request.filters))
        if sieve is not None:
            sieve.saw(products, len(filtered), client.obs.filter_products)
    result = products_from_rows(filtered, claims)
    if client.unusable:
        result = [
            replace(p, size=None, problem=p.problem or client.unusable[p.data_uri])
            if p.data_uri in client.unusable
            else p
            for p in result
        ]
    log.log(
        logging.INFO if claims is None else logging.DEBUG,
        "request %s: %d product rows, %d selected, %d products",
        request.name,
        len(products),
        len(filtered),
        len(result),
    )
    return result


def halving(name: str, batch: list[str], exc: Exception) -> str:
    """The log line of a product list asked for again in halves."""
    return (
        f"request {name}: the product list of {len(batch)} observations failed ({exc}); "
        f"asking for it in halves of {(len(batch) + 1) // 2}"
    )
