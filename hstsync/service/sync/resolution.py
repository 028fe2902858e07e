"""Resolution: looking a request up in the archive, with the current MAST token.

:class:`Resolution` holds the process's token (looked up again before each request's
pass, so a daemon picks up a new one without a restart), says once per token whether
MAST accepts it, runs the lookups (``service.lookup``: worker threads, timeouts,
retries) and records what they found, or why they failed, in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hstsync.archive import Sieve, Token, check_transport, preload, session_warning, user_of
from hstsync.config import Config
from hstsync.errors import HstsyncError, ManifestError, ResolveError
from hstsync.model import Request, RequestState
from hstsync.service.sync.hooks import PassLog
from hstsync.service.sync.lookup import Lookups
from hstsync.store import ProductRow, Store

log = logging.getLogger(__name__)


class Resolution:
    """Lookups of one process: the token they carry, and what they record."""

    def __init__(
        self,
        config: Config,
        store: Store,
        passes: PassLog,
        *,
        token: str | None = None,
        token_source: Callable[[], Token | None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # The token goes to config.mast.server only: queries (a host-scoped cookie) and
        # downloads (download_url is always on that server; download.py drops it on a
        # redirect elsewhere), never to the cloud copy (``Fetcher._download``, no
        # headers). It is sent for every MAST product, public ones included: the same
        # host already gets it with every query, and a product's rights can change
        # between resolution and transfer.
        self.token = token
        if token:
            check_transport(config.mast.server)
        #: looked up again at each request's pass, so a daemon picks up a new token
        self._token_source = token_source
        self._passes = passes
        self._lookups = Lookups(config, token)
        #: the token whose session has been checked (once per token)
        self._checked: str | None = None

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

    async def _check_session(self) -> None:
        """Say early, once per token, when it is refused or about to expire."""
        if not self.token or self._checked == self.token:
            return
        self._checked = self.token
        try:
            info = await self._lookups.session_info()
        except HstsyncError as exc:
            log.warning("cannot check the MAST token: %s", exc)
            return
        warning = session_warning(info)
        if warning is not None:
            log.warning("%s", warning)
        else:
            log.info("MAST token accepted for %s", user_of(info))

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
        sieve = Sieve(request.filters)
        batches = self._lookups.resolve_batches(request, sieve)
        try:
            await self._check_session()
            while True:
                try:
                    # Each archive call in a daemon thread, under [mast] timeout, retried
                    # when transient (service.lookup): the loop, and other requests'
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
        removed = self.store.end_resolution(name, stamp)
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
        self._passes.failure(name, str(exc))
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
