"""What a batch of a request's recorded products needs now, against what the mirror
holds: the pure ``service.sync.planner.plan`` over ``service.sync.holdings``' look at
the disk, with the two things a plan cannot do itself. Rows that can never be fetched
are failed with the reason; a file found where a product goes that fails the content
check of a download is moved aside to ``FILE.rejected`` and fetched, never accepted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from hstsync.config import Config
from hstsync.model import ProductState
from hstsync.service.sync.holdings import (
    content_problem,
    needs_check,
    odd_sizes,
    reject,
    sizes_on_disk,
    with_problems,
)
from hstsync.service.sync.planner import Plan, plan
from hstsync.store import ProductRow, Store

log = logging.getLogger(__name__)


class Planning:
    """Plans a pass's batches; ``have_token`` says whether a MAST token is at hand now."""

    def __init__(self, config: Config, store: Store, have_token: Callable[[], bool]) -> None:
        self.config = config
        self.store = store
        self._have_token = have_token

    async def plan(self, name: str, rows: Sequence[ProductRow]) -> Plan:
        """What some of the request's recorded products need now (``service.sync.planner.plan``).

        Rows that can never be fetched are failed with the reason. A file found where a
        product goes (astroquery's own tree, an earlier copy) counts as present only once
        it passes the same content check as a download: one that fails is moved aside to
        ``FILE.rejected`` and fetched, never accepted.
        """
        rows = [row for row in rows if row.state is not ProductState.WITHDRAWN]
        products = [row.product for row in rows]
        mirror = self.config.paths.mirror
        holdings = await asyncio.to_thread(sizes_on_disk, products, mirror)
        recorded = {row.product.data_uri: row.state for row in rows}
        decide = functools.partial(
            plan,
            products,
            mirror,
            free=0,  # room is the pass's, across its batches (planner.Room), not this plan's
            recorded=recorded,
            have_token=self._have_token(),
            superseded={row.product.data_uri for row in rows if row.supersede},
            sizes=odd_sizes(products, holdings, self.store.sizes_sent),
        )
        first = decide(holdings)
        self._fail_refused(name, rows, first)
        problems: dict[str, str] = {}
        for f in first.files:
            if needs_check(f) and f.dest is not None:
                why = await asyncio.to_thread(content_problem, f.dest)
                if why is not None and self._set_aside(name, f.dest, why):
                    problems[f.product.data_uri] = why
        if not problems:
            return first
        # the rejected files are gone from their place: what is left to hold is the .part
        return decide(with_problems(holdings, problems))

    def _fail_refused(self, name: str, rows: Sequence[ProductRow], planned: Plan) -> None:
        before = {row.product.data_uri: row for row in rows}
        for f in planned.refusals:
            row = before[f.product.data_uri]
            if row.state is not ProductState.FAILED or row.last_error != f.refused:
                # %r: a hostile name must not forge log lines (newlines, NUL)
                log.warning("request %s: %r: %s", name, f.product.filename, f.refused)
                self.store.mark(name, f.product.data_uri, ProductState.FAILED, error=f.refused)

    def _set_aside(self, name: str, dest: Path, why: str) -> bool:
        """Move a file that is not the product aside; False when it could not be moved
        (it then stays, and the downloader finds it present as before)."""
        try:
            aside = reject(dest)
        except OSError as exc:
            log.warning(
                "request %s: %s already in the mirror is not the product (%s) and cannot "
                "be moved aside (%s)",
                name,
                dest,
                why,
                exc.strerror or exc,
            )
            return False
        log.warning(
            "request %s: %s already in the mirror is not the product (%s); "
            "moved aside to %s and fetched",
            name,
            dest,
            why,
            aside.name,
        )
        return True
