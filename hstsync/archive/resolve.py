"""Resolution through astroquery.mast: a Request becomes a list of Products.

The steps are the tutorial's, unchanged: ``Observations.query_criteria`` →
``get_product_list`` (in batches of obsids) → ``filter_products``; then the rows
become Products at one boundary (:func:`hstsync.archive.rows.products_from_rows`),
which also collapses repeated dataURIs and gives each destination path one owner.
astroquery is synchronous (requests), so every :class:`Resolver` method blocks; the
service calls them one step at a time in worker threads, each under a deadline
(``service.sync.lookup``), and downloads never wait for them.

This module owns the :class:`Resolver`: the one object a caller holds per thread,
offering each step, and the steps run in order with failed product lists asked for
again in halves (:meth:`Resolver.resolve_batches`). Each step is a module's own:

- ``client``: astroquery pointed at the configured server, bounded, with the token;
- ``observations``: a page of observations, and why a first page is empty;
- ``products``: one batch's product list, and the selection from tables;
- ``pathlookup``: JWST's keys in the public bucket;
- ``failures``: astroquery's and requests' exceptions as ours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from hstsync.archive.client import DEFAULT_TIMEOUT, Client
from hstsync.archive.observations import observation_page
from hstsync.archive.paging import Batcher, ObservationPage, batch_sizes
from hstsync.archive.pathlookup import path_lookup
from hstsync.archive.products import halving, product_list, select_products
from hstsync.archive.rows import Claims
from hstsync.archive.selection import Sieve
from hstsync.archive.walk import AskPage, Walk
from hstsync.errors import ArchiveUnavailable
from hstsync.model import Product, Request

log = logging.getLogger(__name__)


class Resolver:
    """Resolves requests against one MAST server, each step asked through its
    :class:`~hstsync.archive.client.Client` (which bounds every HTTP request by
    ``timeout``). Not thread-safe, as the client is not: one call at a time per
    instance."""

    def __init__(
        self, server: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        #: astroquery's client, pointed at ``server`` and carrying ``token``
        self.client = Client(server, token, timeout=timeout)
        self.server = self.client.server
        self.timeout = timeout

    # -- resolution -------------------------------------------------------------------
    #
    # In steps, so a caller can bound, retry and batch each archive call on its own:
    # ``observations`` (one page), ``product_table`` (one batch of obsids), then
    # ``select`` (filters and the row → Product boundary; no network).
    # ``resolve_batches`` runs them as the walk says (``archive.walk``), blocking
    # (``hstsync plan``).

    def resolve_batches(
        self, request: Request, sieve: Sieve | None = None
    ) -> Iterator[list[Product]]:
        """The products a request names today, one batch of observations at a time.
        Blocking (``hstsync plan``; the pass calls the steps itself, ``service.sync.lookup``).

        Each batch's table is asked for, selected and dropped before the next: a
        program of 100,000 products never holds more than one batch's table. Raises
        :class:`~hstsync.errors.ManifestError` for what the user must fix (an unknown
        criterion, a proposal with no observations), :class:`ArchiveUnavailable` for
        trouble worth trying again soon and :class:`~hstsync.errors.ResolveError` for
        other archive trouble.
        ``sieve`` follows what the filters let through (and why nothing, if so).
        """
        claims = Claims()
        steps = Walk(
            Batcher(batch_sizes(request.collection)),
            sieve,
            lambda batch, exc: log.warning("%s", halving(request.name, batch, exc)),
        )
        while (step := steps.next()) is not None:
            if isinstance(step, AskPage):
                steps.answer(self.observations(request, step.page))
                continue
            try:
                table = self.product_table(step.obsids)
            except ArchiveUnavailable as exc:
                steps.fail(exc)
                continue
            yield self.select(request, [table], claims, sieve)
            steps.answer()

    def observations(self, request: Request, page: int = 1) -> ObservationPage:
        """One page of the request's observations, with the paging the archive says it
        used (:func:`~hstsync.archive.observations.observation_page`). Blocking."""
        return observation_page(self.client, request, page)

    def product_table(self, obsids: list[str]) -> Any:
        """The products table of one batch of obsids (``get_product_list``). Blocking."""
        return product_list(self.client, obsids)

    def select(
        self,
        request: Request,
        tables: Iterable[Any],
        claims: Claims | None = None,
        sieve: Sieve | None = None,
    ) -> list[Product]:
        """``filter_products`` over the batches' tables, then rows → products
        (:func:`~hstsync.archive.products.select_products`)."""
        return select_products(self.client, request, tables, claims, sieve)

    def cloud_keys(self, data_uris: list[str]) -> dict[str, str]:
        """The public bucket's keys of these products, as MAST's path-lookup service
        gives them; a product the bucket does not hold is left out
        (:func:`~hstsync.archive.pathlookup.path_lookup`). Blocking."""
        return path_lookup(self.client, data_uris)

    def session_info(self) -> dict[str, Any]:
        """The archive's view of the current token (``Observations.session_info``;
        :meth:`~hstsync.archive.client.Client.session_info`). Blocking."""
        return self.client.session_info()
