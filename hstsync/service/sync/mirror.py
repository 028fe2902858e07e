"""One pass of mirroring, orchestrated: resolve, plan, fetch, settle.

:class:`Mirror` holds the process's collaborators and says in which order they act
for a request; it decides nothing itself. Resolution is ``service.sync.resolution``,
each batch's plan ``service.sync.planning`` (the pure ``service.sync.planner.plan``
over what ``service.sync.holdings`` sees on disk), the transfers
``service.sync.fetcher``, and the request's final state the pure
``service.sync.settlement.settle``. The daemon and ``run --once`` both drive it. Every
state change is written to the store before the step that depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hstsync.archive import Token
from hstsync.config import Config
from hstsync.errors import StoreError
from hstsync.model import Request, RequestState, counts_of, human_bytes
from hstsync.service.sync.attic import attic_path
from hstsync.service.sync.fetcher import Fetcher
from hstsync.service.sync.holdings import (
    free_space,
)
from hstsync.service.sync.hooks import Notices, PassLog
from hstsync.service.sync.jobs import Job, JobFeed, PassProgress, download_url
from hstsync.service.sync.planner import Action, Room
from hstsync.service.sync.planning import Planning
from hstsync.service.sync.resolution import Resolution
from hstsync.service.sync.results import results_path, write_results
from hstsync.service.sync.settlement import first_failure, settle
from hstsync.service.sync.verify import Budget, Report, verify_request
from hstsync.store import ProductRow, Store

__all__ = ["Mirror", "PassProgress", "sync_requests"]

log = logging.getLogger(__name__)


class Mirror:
    """The mirroring half of hstsync for one process: resolution, fetcher, store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        token: str | None = None,
        token_source: Callable[[], Token | None] | None = None,
        progress: PassProgress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._display = progress
        #: what each running pass brought and left failed, for the on_change hook
        self.passes = PassLog()
        #: the other events the hook is told; its owner tells them (``tell_forever``,
        #: ``drain``)
        self.notices = Notices(config)
        #: the state line last logged for each request in its current pass
        self._told: dict[str, str] = {}
        self.resolution = Resolution(
            config, store, self.passes, self.notices, token=token, token_source=token_source
        )
        self.planning = Planning(config, store, lambda: self.resolution.token is not None)
        self.fetcher = Fetcher(
            config,
            store,
            self.passes,
            token=lambda: self.resolution.token,
            display=progress,
        )

    async def __aenter__(self) -> Mirror:
        await self.fetcher.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.fetcher.__aexit__(*exc_info)

    async def warm_up(self) -> None:
        await self.resolution.warm_up()

    async def flush_progress_forever(self) -> None:
        await self.fetcher.flush_progress_forever()

    async def sync(self, request: Request) -> RequestState:
        """Resolve one request, fetch what it lacks, and settle its state."""
        self.begin(request)
        state = await self.run(request)
        await self.passes.finish(self.config, self.store, request.name, str(state))
        return state

    async def verify(
        self, request: Request, *, dry_run: bool = False, budget: Budget | None = None
    ) -> Report:
        """Sync one request, then check that its mirrored files are the archive's
        (``service.sync.verify``); without ``dry_run``, what is not is fetched again."""
        return await verify_request(self, request, dry_run=dry_run, budget=budget)

    def begin(self, request: Request) -> None:
        """A pass of ``request`` starts: the current token, its proposals, its report."""
        self.resolution.refresh_token()
        self.fetcher.proposals[request.name] = request.proposal_ids
        self.passes.start(request.name)
        self.store.begin_pass(request.name)
        self._told.pop(request.name, None)

    async def run(self, request: Request) -> RequestState:
        """The pass itself (between :meth:`begin` and the report's end)."""
        try:
            return await self._sync(request)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # removed while running
                self.store.set_request_state(request.name, RequestState.QUEUED)
            raise

    async def _sync(self, request: Request) -> RequestState:
        """Resolve batch by batch; each batch is planned and its transfers queued while
        the next is looked up. Even when the lookup fails, what an earlier one listed is
        still fetched."""
        name = request.name
        pass_ = _Pass(name, Room(free_space(self.config.paths.mirror)))
        feed = JobFeed(self.config.download.concurrency)
        async with asyncio.TaskGroup() as group:
            group.create_task(self.fetcher.fetch_feed(feed))
            looked = await self.resolution.resolve(
                request, functools.partial(self._take, pass_, feed)
            )
            if looked.invalid:
                await feed.close()
                return RequestState.INVALID
            if looked.error is not None:
                pass_.lookup_error = looked.error
                for rows in self.store.product_pages(name, unseen_by=looked.stamp):
                    await self._take(pass_, feed, rows)
            await feed.close()
        resolved = pass_.lookup_error is None
        shortfall = pass_.room.shortfall()
        if shortfall is not None:
            log.warning("request %s: %s", name, shortfall)
            self.passes.failure(name, pass_.lookup_error or shortfall)
            self.store.set_request_state(
                name,
                RequestState.INCOMPLETE,
                pass_.lookup_error or shortfall,
                resolved=resolved,
            )
            return RequestState.INCOMPLETE
        waiting = pass_.waiting()
        if waiting is not None:
            log.info("request %s: %s", name, waiting)
        return self.settle(
            name, lookup_error=pass_.lookup_error, empty=looked.empty, waiting=waiting
        )

    async def _take(self, pass_: _Pass, feed: JobFeed, rows: list[ProductRow]) -> None:
        """Plan one batch of a request's products and queue its transfers, while the
        mirror has room for all that the pass has planned so far."""
        name = pass_.name
        planned = await self.planning.plan(name, rows)
        if not pass_.room.take(planned):
            return
        transfers = planned.transfers
        if not transfers:
            return
        if self._display is not None:
            size = sum(f.product.size or 0 for f in transfers)
            # files already complete on disk are only recorded, not fetched
            held = sum(
                (f.product.size or 0) if f.action is Action.RECORD else f.on_disk for f in transfers
            )
            self._display.planned(name, len(transfers), size, held)
        if not pass_.downloading:
            pass_.downloading = True
            self.store.set_request_state(
                name, RequestState.DOWNLOADING, pass_.lookup_error, resolved=False
            )
        log.info(
            "request %s: %d files to fetch, %d bytes",
            name,
            planned.to_fetch,
            planned.missing_bytes,
        )
        mirror, limit = self.config.paths.mirror, self.config.download.max_bytes_per_pass
        keys = await self.resolution.cloud_keys(
            name, [f.product for f in transfers if f.action is Action.FETCH]
        )
        for f in transfers:
            if f.dest is None:
                continue
            if limit and f.action is Action.FETCH:
                if pass_.queued >= limit:  # the rest waits for the next pass
                    pass_.waiting_files += 1
                    pass_.waiting_bytes += f.missing
                    continue
                pass_.queued += f.missing
            key = keys.get(f.product.data_uri)
            product = f.product if key is None else replace(f.product, cloud_key=key)
            job = Job(name, product, f.dest, f.on_disk)
            if f.replace:
                old_to = attic_path(mirror, f.product.relpath())
                job = replace(job, old_to=old_to, why="a new version in the catalogue")
            await feed.put(job)

    def settle(
        self,
        name: str,
        *,
        lookup_error: str | None = None,
        empty: str | None = None,
        waiting: str | None = None,
    ) -> RequestState:
        """Write the request's state after a pass (``service.sync.settlement.settle``)."""
        self._write_results(name)
        summary = self.store.summaries(name)
        counts = summary[0].counts if summary else counts_of(())
        settled = settle(
            counts,
            first_failure=first_failure(self.store.first_failed(name)),
            lookup_error=lookup_error,
            empty=empty,
            waiting=waiting,
        )
        self.store.set_request_state(
            name, settled.state, settled.last_error, resolved=settled.resolved
        )
        line = f"{settled.state} ({counts.done}/{counts.total} done)"
        if self._told.get(name) != line:  # a verify after the pass settles again
            log.info("request %s: %s", name, line)
            self._told[name] = line
        return settled.state

    def _write_results(self, name: str) -> None:
        """astroquery's manifest table for the request, as ECSV beside the mirror."""
        server = self.config.mast.server
        row = self.store.get_request(name)
        meta = {"request": name, "obs_collection": row.collection if row else "HST"}
        try:
            write_results(
                results_path(self.config.paths.mirror, name),
                self.store.product_pages(name),
                self.config.paths.mirror,
                functools.partial(download_url, server),
                meta,
            )
        except OSError as exc:
            log.warning("request %s: cannot write the results table (%s)", name, exc.strerror)
        except RuntimeError as exc:  # an astropy that writes ECSV pages otherwise
            log.warning("request %s: cannot write the results table (%s)", name, exc)


@dataclass(slots=True)
class _Pass:
    """One request's pass while its batches are planned."""

    name: str
    room: Room
    #: why this pass's lookup failed (it fetches what an earlier one listed)
    lookup_error: str | None = None
    #: the request has been marked downloading
    downloading: bool = False
    #: bytes this pass has queued to fetch, and what it held back for the next pass
    #: (``[download] max_bytes_per_pass``)
    queued: int = 0
    waiting_files: int = 0
    waiting_bytes: int = 0

    def waiting(self) -> str | None:
        """What this pass left for the next one, in words (None: nothing)."""
        if not self.waiting_files:
            return None
        return (
            f"{self.waiting_files} file(s), {human_bytes(self.waiting_bytes)}, wait for the "
            "next pass ([download] max_bytes_per_pass)"
        )


async def sync_requests(mirror: Mirror, requests: Sequence[Request]) -> dict[str, RequestState]:
    """Mirror several requests at once; transfers share the concurrency budget."""
    results: dict[str, RequestState] = {}

    async def one(request: Request) -> None:
        results[request.name] = await mirror.sync(request)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        flusher = group.create_task(mirror.flush_progress_forever())
        async with asyncio.TaskGroup() as work:
            for request in requests:
                work.create_task(one(request))
        flusher.cancel()
    log.info("pass over %d requests took %.2f s", len(requests), time.monotonic() - started)
    return results
