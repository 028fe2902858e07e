"""The fetch scheduler: transfers of one process, ``concurrency`` at a time.

:class:`Fetcher` owns the process's HTTP session and its downloaders. It runs a pass's
transfers with a fixed set of workers, shares one transfer between requests that name
the same file, tries the cloud copy before MAST, and asks the archive whether a file in
place changed (``probe``). What each transfer did is written down by
:class:`~hstsync.service.sync.records.Records`; what to fetch is decided elsewhere
(``service.sync.planner``); this is the doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp

from hstsync.archive import cloud_source
from hstsync.config import Config
from hstsync.model import ProductState
from hstsync.service.sync.hooks import PassLog
from hstsync.service.sync.jobs import DOWNLOAD_PATH, Job, JobFeed, PassProgress, download_url
from hstsync.service.sync.records import Records
from hstsync.store import Store
from hstsync.transfer import (
    Bandwidth,
    Downloader,
    Outcome,
    Probe,
    Transfer,
    after_fallback,
    open_session,
)

log = logging.getLogger(__name__)

__all__ = ["DOWNLOAD_PATH", "Fetcher", "Job", "JobFeed", "PassProgress", "download_url"]


class Fetcher:
    """Transfers for one process: session, downloaders, shared transfers; what they did
    is written down by its :class:`~hstsync.service.sync.records.Records`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        passes: PassLog,
        *,
        token: Callable[[], str | None] = lambda: None,
        display: PassProgress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        #: the current MAST token (``Resolution`` keeps it): sent to config.mast.server
        #: only, never to the cloud copy
        self._token = token
        self.records = Records(store, passes, token, display)
        #: each request's proposals, for the message of a product refused for a token
        self.proposals = self.records.proposals
        self._session: aiohttp.ClientSession | None = None
        self._downloader: Downloader | None = None
        #: the same session, one attempt per file: a failing cloud copy hands over to
        #: MAST at once rather than after the whole retry policy
        self._cloud_downloader: Downloader | None = None
        self._slots = asyncio.Semaphore(config.download.concurrency)
        # Two requests may name the same file: one transfer serves both.
        self._inflight: dict[Path, asyncio.Future[Outcome]] = {}

    async def __aenter__(self) -> Fetcher:
        self._session = open_session(self.config.download)
        bandwidth = Bandwidth(self.config.download.bwlimit)  # one limit for both sources
        self._downloader = Downloader(
            self._session,
            self.config.download,
            on_progress=self.records.count_bytes,
            on_retry=self.records.retrying,
            trusted_hosts=self.config.mast.token_hosts,
            bandwidth=bandwidth,
        )
        self._cloud_downloader = Downloader(
            self._session,
            replace(self.config.download, retries=0),
            on_progress=self.records.count_bytes,
            bandwidth=bandwidth,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # the marks first; a busy database is logged, not raised: a mark lost here is
        # a file the next pass finds present
        self.records.flush_progress()
        if self._session is not None:
            await self._session.close()

    async def fetch_feed(self, feed: JobFeed) -> None:
        """Fetch the jobs put in ``feed`` as they come, ``concurrency`` at a time,
        until it is closed and empty.

        A fixed set of workers takes the jobs one after another: a task per job, made
        up front, held a coroutine frame per file for the whole pass, and memory grew
        with the size of the program. The feed is bounded, so whoever fills it (the
        pass, batch by batch) waits for the workers rather than running ahead.
        """

        async def worker() -> None:
            while (job := await feed.get()) is not None:
                await self.fetch(job)

        async with asyncio.TaskGroup() as group:
            for _ in range(feed.workers):
                group.create_task(worker())
        # the pass settles from these rows next
        self.records.flush_marks()

    async def fetch(self, job: Job) -> Outcome:
        key = (job.request, job.product.data_uri)
        while (shared := self._inflight.get(job.dest)) is not None:
            outcome = await self._wait_for_shared(key, job, shared)
            if outcome is not None:
                self.records.record(key, job, outcome)
                return outcome
            # The request that owned the transfer was stopped (manifest removed or
            # re-planned): this one takes it over from the same .part.
            log.info("%s:%s: taking over a shared transfer", job.request, job.product.filename)
            # the attempts recorded so far were the old transfer's; its outcome never comes
            self.records.live_attempts.pop(key, None)
        return await self._fetch_owned(key, job)

    async def _wait_for_shared(
        self, key: tuple[str, str], job: Job, shared: asyncio.Future[Outcome]
    ) -> Outcome | None:
        """Wait for another request's transfer of the same file; None when that
        transfer was cancelled while this request still wants the file."""
        waiting = self.records.keys[job.dest]
        waiting.append(key)
        try:
            return await asyncio.shield(shared)
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if shared.cancelled() and this is not None and not this.cancelling():
                return None
            # This request is stopping: the owner must not record for it any more.
            with contextlib.suppress(ValueError):
                waiting.remove(key)
            self.records.progress.pop(key, None)
            self.records.live_attempts.pop(key, None)
            raise

    async def _fetch_owned(self, key: tuple[str, str], job: Job) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[job.dest] = future
        self.records.keys[job.dest] = [key]
        try:
            async with self._slots:
                assert self._downloader is not None, "Fetcher used outside 'async with'"
                self.records.mark(job.request, job.product.data_uri, ProductState.DOWNLOADING)
                self.records.progress[key] = job.held
                try:
                    outcome = await self._download(job)
                except asyncio.CancelledError:
                    # Shutdown or a re-plan: the .part stays for resume, and the row
                    # says so, so a later start needs no recovery for it.
                    self.records.interrupted(job)
                    raise
            future.set_result(outcome)
            # each waiting request records the outcome for itself (fetch)
            self.records.record(key, job, outcome)
            return outcome
        except BaseException:
            if not future.done():
                future.cancel()
            raise
        finally:
            self._inflight.pop(job.dest, None)
            for other in self.records.keys.pop(job.dest, []):
                self.records.progress.pop(other, None)

    async def _download(self, job: Job) -> Outcome:
        """The cloud copy first when it may serve this file, then MAST if need be.

        The cloud gets one attempt and never a credential. On any failure MAST takes
        over from the same ``.part``: a cloud body whose size disagreed with the
        catalogue left none, so the bytes kept belong to a file of the right size,
        and size and FITS checksums are checked again at the end.
        """
        assert self._downloader is not None and self._cloud_downloader is not None
        label = f"{job.request}:{job.product.filename}"
        cloud_url = cloud_source(self.config.download, job.product)
        first: Outcome | None = None
        if cloud_url is not None:
            first = await self._cloud_downloader.fetch(
                Transfer(
                    url=cloud_url,
                    dest=job.dest,
                    size=job.product.size,
                    label=f"{label} (cloud)",
                    root=self.config.paths.mirror,
                    public=True,
                    old_to=job.old_to,
                )
            )
            if first.state is ProductState.DONE:
                # the bucket's validators say nothing of MAST's copy: none are kept
                return replace(first, etag=None, last_modified=None)
            log.info("%s: the cloud copy failed (%s); fetching from MAST", label, first.error)
        outcome = await self._downloader.fetch(
            Transfer(
                url=download_url(self.config.mast.server, job.product.data_uri),
                dest=job.dest,
                size=job.product.size,
                label=label,
                headers=self.credentials(),
                root=self.config.paths.mirror,
                public=job.product.is_public,
                old_to=job.old_to,
            )
        )
        return outcome if first is None else after_fallback(first, outcome)

    def credentials(self) -> dict[str, str]:
        """The headers that carry the current MAST token (none without one): for MAST
        only, never the cloud copy."""
        token = self._token()
        return {"Authorization": f"token {token}"} if token else {}

    async def probe(
        self, transfer: Transfer, *, etag: str | None, last_modified: str | None
    ) -> Probe:
        """Whether the archive's copy of a file in place changed (``transfer.Probe``)."""
        assert self._downloader is not None, "Fetcher used outside 'async with'"
        return await self._downloader.probe(transfer, etag=etag, last_modified=last_modified)

    def flush(self) -> None:
        """Write the product marks queued so far (a verify's refetches, say)."""
        self.records.flush_marks()

    async def flush_progress_forever(self) -> None:
        await self.records.flush_progress_forever()
