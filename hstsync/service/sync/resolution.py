"""Resolution: looking a request up in the archive, with the current MAST token.

:class:`Resolution` holds the process's token (looked up again before each request's
pass, so a daemon picks up a new one without a restart), has the archive asked how it
stands (``service.sync.standing``), runs the lookups (``service.sync.lookup``: worker
threads, timeouts, retries) and records what they found, or why they failed, in the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hstsync.archive import (
    Sieve,
    Token,
    check_transport,
    preload,
    wants_path_lookup,
)
from hstsync.config import Config
from hstsync.errors import HstsyncError, ManifestError, ResolveError, StoreError
from hstsync.model import Product, Request, RequestState
from hstsync.service.sync.hooks import Notices, PassLog
from hstsync.service.sync.lookup import Lookups
from hstsync.service.sync.standing import TokenStanding
from hstsync.store import ProductRow, Store

log = logging.getLogger(__name__)


#: failed lookups of a request in a row before the hook is told (once): one is often
#: the archive's weekly maintenance, three (two, four, eight minutes apart in a
#: daemon; three nights for a nightly pass) are worth a person's look
LOOKUPS_FAILING = 3


class Resolution:
    """Lookups of one process: the token they carry, and what they record."""

    def __init__(
        self,
        config: Config,
        store: Store,
        passes: PassLog,
        notices: Notices,
        *,
        token: str | None = None,
        token_source: Callable[[], Token | None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # The token goes to config.mast.server only: queries (a host-scoped cookie) and
        # downloads (download_url is always on that server; transfer/http.py drops it on a
        # redirect elsewhere), never to the cloud copy (``Fetcher._download``, no
        # headers). It is sent for every MAST product, public ones included: the same
        # host already gets it with every query, and a product's rights can change
        # between resolution and transfer.
        self.token = token
        if token:
            check_transport(config.mast.server)
        #: looked up again at each request's pass, so a daemon picks up a new token
        self._token_source = token_source
        #: where the token came from (``Token.source``), for the advice on renewing it
        self._source: str | None = None
        self._passes = passes
        self._notices = notices
        self._lookups = Lookups(config, token)
        self._standing = TokenStanding(store, notices, self._lookups)

    async def warm_up(self) -> None:
        """Load astroquery in a worker thread, so the first request resolves at once."""
        try:
            seconds = await asyncio.to_thread(preload)
        except Exception as exc:  # the first resolution will say what is wrong
            log.warning("cannot load astroquery: %s", exc)
            return
        log.debug("astroquery loaded in %.2f s", seconds)

    def refresh_token(self) -> None:
        """Look the token up again: found, changed, or removed since the last pass."""
        if self._token_source is None:
            return
        try:
            found = self._token_source()
        except HstsyncError as exc:
            log.warning("cannot read the MAST token (%s); keeping the previous one", exc)
            return
        self._source = found.source if found else None
        value = found.value if found else None
        if value == self.token:
            return
        if found is not None:
            try:
                check_transport(self.config.mast.server)
            except HstsyncError as exc:
                log.error("new MAST token not used: %s", exc)
                return
            changed = "changed" if self.token else "found"
            log.info("MAST token %s (from %s)", changed, found.describe())
        else:
            log.info("MAST token removed: public data only from now on")
        self.token = value
        self._lookups.set_token(value)  # idle resolvers' sessions carry the old token

    async def resolve(
        self, request: Request, on_batch: Callable[[list[ProductRow]], Awaitable[None]]
    ) -> LookupEnd:
        """Resolve and record, one batch of observations at a time.

        Each batch is recorded, then handed to ``on_batch`` (which plans and queues its
        transfers) before the next is asked for: a big program's first files are
        fetched while the rest is still being looked up, and its list is never held
        whole. Only the archive's own trouble makes the lookup fail; what ``on_batch``
        raises goes to the caller.
        """
        name = request.name
        previous = self.store.get_request(name)
        self.store.set_request_state(
            name, RequestState.RESOLVING, previous.last_error if previous else None
        )
        stamp = self.store.begin_resolution(name)
        listed = new = changed = 0
        sieve = Sieve(request.filters, request.collection)

        def retrying(why: str) -> None:
            # `status` shows the error and the next try while a lookup retries
            with contextlib.suppress(StoreError):
                self.store.note_error(name, why)

        batches = self._lookups.resolve_batches(request, sieve, on_retry=retrying)
        try:
            await self._standing.check(self.token, self._source)
            while True:
                try:
                    # Each archive call in a daemon thread, under [mast] timeout, retried
                    # when transient (service.sync.lookup): the loop, and other requests'
                    # lookups and transfers, carry on meanwhile.
                    products = await anext(batches)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    return self._failed(name, stamp, exc)
                diff, rows = self.store.record_batch(name, products, stamp)
                listed += len(rows)
                new += diff.new
                changed += diff.changed
                await on_batch(rows)
        finally:
            await batches.aclose()
        delisted = self.store.end_resolution(name, stamp)
        self.store.note_planned(name, sieve.planned)
        if sieve.planned:
            log.info(
                "request %s: %d observation(s) planned, not yet executed: "
                "mirrored at a re-sync once executed",
                name,
                sieve.planned,
            )
        removed = delisted.removed + len(delisted.withdrawn)
        mirror = self.config.paths.mirror
        for uri, relpath in delisted.withdrawn:
            log.info("request %s: %s is no longer listed; its file stays (withdrawn)", name, uri)
            self._passes.withdrawn(name, None if relpath is None else mirror / relpath, uri)
        log.info(
            "request %s: resolved %d products (%d new, %d changed, %d removed)",
            name,
            listed,
            new,
            changed,
            removed,
        )
        empty = None if listed else sieve.why_none(request.proposal_ids)
        if empty is not None:
            log.warning("request %s: nothing to mirror: %s", name, empty)
            if previous is None or previous.last_error != empty:
                self._passes.failure(name, empty)  # told once, not at every re-sync
        return LookupEnd(stamp, empty=empty)

    async def cloud_keys(self, name: str, products: list[Product]) -> dict[str, str]:
        """The public bucket's keys of the products of ``name`` about to be fetched that
        MAST's path lookup is asked for (``archive.wants_path_lookup``: public JWST
        files with ``source = "auto"``), by dataURI. Never fails: without an answer,
        those files come from MAST."""
        asked = [p.data_uri for p in products if wants_path_lookup(self.config.download, p)]
        if not asked:
            return {}
        try:
            keys = await self._lookups.cloud_keys(asked)
        except Exception as exc:  # the cloud copy only saves MAST some work
            reason = exc if isinstance(exc, HstsyncError) else type(exc).__name__
            log.warning(
                "request %s: no bucket keys from the archive's path lookup (%s): "
                "%d file(s) from MAST",
                name,
                reason,
                len(asked),
            )
            return {}
        log.debug("request %s: %d of %d bucket keys found", name, len(keys), len(asked))
        return keys

    def _failed(self, name: str, stamp: int, exc: Exception) -> LookupEnd:
        if isinstance(exc, ManifestError):
            log.warning("request %s: invalid: %s", name, exc)
            self._passes.failure(name, str(exc))
            self.store.set_request_state(name, RequestState.INVALID, str(exc))
            return LookupEnd(stamp, error=str(exc), invalid=True)
        if not isinstance(exc, HstsyncError):
            # a bug, or an answer nobody foresaw: this request's lookup fails and is
            # tried again later; the pass and every other request go on
            log.error("request %s: the lookup failed unexpectedly", name, exc_info=exc)
            exc = ResolveError(f"the lookup failed unexpectedly: {type(exc).__name__}")
        row = self.store.lookup_failed(name, str(exc))
        log.warning(
            "request %s: cannot resolve: %s (looked up again at %s)",
            name,
            exc,
            row.next_lookup,
        )
        if row.lookup_failures == LOOKUPS_FAILING:
            # once: not at every retry (the pass's own report leaves lookups out)
            self._notices.post(
                "lookups_failing",
                name,
                str(exc),
                proposal_ids=list(row.proposal_ids),
                collection=row.collection,
                failures=row.lookup_failures,
                next_lookup=row.next_lookup,
            )
        return LookupEnd(stamp, error=str(exc))


@dataclass(frozen=True, slots=True)
class LookupEnd:
    """How a request's lookup ended."""

    #: the resolution's stamp (``Store.begin_resolution``)
    stamp: int
    #: why it failed; None when every batch was listed and recorded
    error: str | None = None
    #: the archive refused the request itself (the manifest must be fixed)
    invalid: bool = False
    #: why the lookup selected nothing (the filters kept no product, or the archive
    #: lists none); None when it selected something
    empty: str | None = None
