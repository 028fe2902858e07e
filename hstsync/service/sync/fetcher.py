"""The fetch scheduler: transfers of one process, ``concurrency`` at a time, recorded.

:class:`Fetcher` owns the process's HTTP session and its downloaders. It runs a pass's
transfers with a fixed set of workers, shares one transfer between requests that name
the same file, tries the cloud copy before MAST, records each outcome (and each failed
attempt as it happens) in the store, and batches byte counters to the database. What
to fetch is decided elsewhere (``service.planner``); this is the doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import aiohttp

from hstsync.archive import auth_required_message, cloud_source
from hstsync.config import Config
from hstsync.errors import StoreError
from hstsync.model import Product, ProductState
from hstsync.service.sync.hooks import PassLog
from hstsync.store import ProductMark, Store
from hstsync.transfer import (
    Bandwidth,
    Downloader,
    Outcome,
    Probe,
    Transfer,
    after_fallback,
    held_bytes,
    open_session,
)

log = logging.getLogger(__name__)

#: how often bytes-done counters reach the database while transfers run
PROGRESS_FLUSH_SECONDS = 1.0

#: product marks written in one transaction at most (see Fetcher._mark)
MARK_BATCH = 64

DOWNLOAD_PATH = "/api/v0.1/Download/file"


class PassProgress(Protocol):
    """What a pass reports as it goes; the CLI draws it (``cli.progress``), the daemon does not."""

    def planned(self, request: str, files: int, size: int, held: int = 0) -> None: ...

    def advanced(self, request: str, delta: int) -> None: ...

    def file_done(self, request: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    """A product row that needs a transfer in this pass, with where it goes."""

    request: str
    product: Product
    dest: Path
    #: the bytes its ``.part`` held when the pass planned it, where its progress starts
    #: (the plan has just looked; a second look per file was a good part of its cost)
    held: int = 0
    #: where the file now under its final name goes when the new one lands (the attic):
    #: a new version of it, or a damaged copy; None: a file in place is kept as it is
    old_to: Path | None = None
    #: why it is fetched again (``old_to``), for the hook
    why: str | None = None


class JobFeed:
    """The jobs of a pass on their way to :meth:`Fetcher.fetch_feed`'s workers: a
    bounded queue, closed by its filler when there will be no more."""

    def __init__(self, concurrency: int) -> None:
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(max(2 * concurrency, 1))
        #: how many workers take from it (one end-of-feed mark each)
        self.workers = concurrency

    async def put(self, job: Job) -> None:
        await self._queue.put(job)

    async def get(self) -> Job | None:
        return await self._queue.get()

    async def close(self) -> None:
        """No more jobs: each worker finishes what it has and stops."""
        for _ in range(self.workers):
            await self._queue.put(None)


def download_url(server: str, data_uri: str) -> str:
    # astroquery's own form (download_file): quote everything but ':' and '/'.
    return f"{server}{DOWNLOAD_PATH}?uri={quote(data_uri, safe=':/')}"


class Fetcher:
    """Transfers for one process: session, downloaders, shared transfers, records."""

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
        #: each request's proposals, for the message of a product refused for a token
        self.proposals: dict[str, tuple[str, ...]] = {}
        self._passes = passes
        self._display = display
        self._session: aiohttp.ClientSession | None = None
        self._downloader: Downloader | None = None
        #: the same session, one attempt per file: a failing cloud copy hands over to
        #: MAST at once rather than after the whole retry policy
        self._cloud_downloader: Downloader | None = None
        self._slots = asyncio.Semaphore(config.download.concurrency)
        # Two requests may name the same file: one transfer serves both.
        self._inflight: dict[Path, asyncio.Future[Outcome]] = {}
        self._progress: dict[tuple[str, str], int] = {}
        self._progress_keys: dict[Path, list[tuple[str, str]]] = {}
        #: failed attempts already recorded for each (request, dataURI) while its file
        #: retries (each request sharing the file has its own row and its own count)
        self._live_attempts: dict[tuple[str, str], int] = {}
        #: product marks not written yet, in order (see _mark)
        self._marks: list[ProductMark] = []

    async def __aenter__(self) -> Fetcher:
        self._session = open_session(self.config.download)
        bandwidth = Bandwidth(self.config.download.bwlimit)  # one limit for both sources
        self._downloader = Downloader(
            self._session,
            self.config.download,
            on_progress=self._count_bytes,
            on_retry=self._retrying,
            trusted_hosts=self.config.mast.token_hosts,
            bandwidth=bandwidth,
        )
        self._cloud_downloader = Downloader(
            self._session,
            replace(self.config.download, retries=0),
            on_progress=self._count_bytes,
            bandwidth=bandwidth,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # the marks first; a busy database is logged, not raised: a mark lost here is
        # a file the next pass finds present
        self._flush_progress()
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
        self._flush_marks()

    async def fetch(self, job: Job) -> Outcome:
        key = (job.request, job.product.data_uri)
        while (shared := self._inflight.get(job.dest)) is not None:
            outcome = await self._wait_for_shared(key, job, shared)
            if outcome is not None:
                self._record(key, job, outcome)
                return outcome
            # The request that owned the transfer was stopped (manifest removed or
            # re-planned): this one takes it over from the same .part.
            log.info("%s:%s: taking over a shared transfer", job.request, job.product.filename)
            # the attempts recorded so far were the old transfer's; its outcome never comes
            self._live_attempts.pop(key, None)
        return await self._fetch_owned(key, job)

    async def _wait_for_shared(
        self, key: tuple[str, str], job: Job, shared: asyncio.Future[Outcome]
    ) -> Outcome | None:
        """Wait for another request's transfer of the same file; None when that
        transfer was cancelled while this request still wants the file."""
        waiting = self._progress_keys[job.dest]
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
            self._progress.pop(key, None)
            self._live_attempts.pop(key, None)
            raise

    async def _fetch_owned(self, key: tuple[str, str], job: Job) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[job.dest] = future
        self._progress_keys[job.dest] = [key]
        try:
            async with self._slots:
                assert self._downloader is not None, "Fetcher used outside 'async with'"
                self._mark(job.request, job.product.data_uri, ProductState.DOWNLOADING)
                self._progress[key] = job.held
                try:
                    outcome = await self._download(job)
                except asyncio.CancelledError:
                    # Shutdown or a re-plan: the .part stays for resume, and the row
                    # says so, so a later start needs no recovery for it.
                    self._interrupted(job)
                    raise
            future.set_result(outcome)
            # each waiting request records the outcome for itself (fetch)
            self._record(key, job, outcome)
            return outcome
        except BaseException:
            if not future.done():
                future.cancel()
            raise
        finally:
            self._inflight.pop(job.dest, None)
            for other in self._progress_keys.pop(job.dest, []):
                self._progress.pop(other, None)

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
        self._flush_marks()

    def _interrupted(self, job: Job) -> None:
        self._flush_marks(quiet=True)  # in order: a queued mark must not land after these
        on_disk = held_bytes(job.dest)
        self._live_attempts.pop((job.request, job.product.data_uri), None)
        for request, uri in self._progress_keys.get(
            job.dest, [(job.request, job.product.data_uri)]
        ):
            self._progress.pop((request, uri), None)
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.PENDING, bytes_done=on_disk)

    def _retrying(self, transfer: Transfer, attempts: int, error: str) -> None:
        """A transfer failed an attempt and will try again: ``status`` shows the attempt
        and its error now, not only once the file is done or has failed for good."""
        self._flush_marks(quiet=True)
        for request, uri in self._progress_keys.get(transfer.dest, ()):
            key = (request, uri)
            self._live_attempts[key] = self._live_attempts.get(key, 0) + 1
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.DOWNLOADING, error=error, attempts=1)

    def _record(self, key: tuple[str, str], job: Job, outcome: Outcome) -> None:
        request, uri = key
        if self._display is not None and outcome.state is ProductState.DONE:
            self._display.file_done(request)
        done = outcome.state is ProductState.DONE
        if done and outcome.replaced is not None:
            self._passes.changed(request, job.dest, uri, outcome.replaced, job.why)
        elif done and (outcome.attempts or outcome.fetched):
            size = outcome.size if outcome.size is not None else job.product.size
            self._passes.new_file(request, job.dest, size or 0, uri)
        elif outcome.state in (ProductState.FAILED, ProductState.AUTH_REQUIRED):
            reason = self._explain(request, outcome) or str(outcome.state)
            self._passes.failure(request, reason, path=job.dest, data_uri=uri)
        self._mark(
            request,
            uri,
            outcome.state,
            bytes_done=None if done else held_bytes(job.dest),
            error=self._explain(request, outcome),
            # attempts already recorded as they failed (_retrying) are not counted twice
            attempts=max(outcome.attempts - self._live_attempts.pop(key, 0), 0),
            # the server's size, when it won over the catalogue's or the catalogue had
            # none: the product's size from now on, so the next pass finds it present
            size=outcome.size if done else None,
            size_note=outcome.size_note if done else None,
            sha256=outcome.sha256 if done else None,
            etag=outcome.etag if done else None,
            last_modified=outcome.last_modified if done else None,
        )
        # no other transfer of this request under way: its pass may settle next (it
        # reads these states), so now; else with the next batch or progress flush
        if len(self._marks) >= MARK_BATCH or not self._request_busy(request, job.dest):
            self._flush_marks()

    def _request_busy(self, request: str, besides: Path) -> bool:
        """Whether a transfer other than ``besides`` is under way for ``request``."""
        for dest, keys in self._progress_keys.items():  # the transfers under way
            # ``is``: Path equality costs more than this whole loop, and an owner's own
            # entry is its job's Path (a waiter's was removed before it records)
            if dest is besides:
                continue
            for other, _ in keys:
                if other == request:
                    return True
        return False

    def _mark(self, request: str, uri: str, state: ProductState, **fields: object) -> None:
        """A product's new state, written with others in one transaction (per file,
        two transactions were a good part of a small file's cost).

        Only ever called once the outcome is final on disk: a file is marked done after
        its bytes and its name are durable (``finish``), so a mark lost to a crash
        leaves a file the next pass finds present and records, never a row that says
        done for bytes that are not there. Written at :data:`MARK_BATCH` marks, when no
        other transfer of the request is under way (its pass settles from these rows
        once ``fetch_feed`` returns), before any direct write about a product (so the
        order holds), and with each progress flush (at most a second late).
        """
        self._marks.append((request, uri, state, fields))

    def _flush_marks(self, *, quiet: bool = False) -> None:
        marks, self._marks = self._marks, []
        if not marks:
            return
        # a plain "downloading" followed by the same row's outcome in one batch says
        # nothing the outcome does not: one UPDATE instead of two
        last = {(request, uri): i for i, (request, uri, _, _) in enumerate(marks)}
        written = [
            mark
            for i, mark in enumerate(marks)
            if mark[2] is not ProductState.DOWNLOADING or mark[3] or last[mark[0], mark[1]] == i
        ]
        try:
            self.store.mark_many(written)
        except StoreError as exc:
            if not quiet:
                raise
            # a busy database: written with the next flush
            self._marks[:0] = marks
            log.warning("product states not recorded yet: %s", exc)

    def _explain(self, request: str, outcome: Outcome) -> str | None:
        if outcome.state is not ProductState.AUTH_REQUIRED:
            return outcome.error
        return auth_required_message(
            self.proposals.get(request, ()),
            have_token=self._token() is not None,
            refusal=outcome.error or "",
        )

    # -- progress -----------------------------------------------------------------------------

    def _count_bytes(self, transfer: Transfer, delta: int) -> None:
        for key in self._progress_keys.get(transfer.dest, ()):
            self._progress[key] = self._progress.get(key, 0) + delta
            if self._display is not None:
                self._display.advanced(key[0], delta)

    def _flush_progress(self) -> None:
        self._flush_marks(quiet=True)
        if not self._progress:
            return
        try:
            self.store.record_progress(dict(self._progress))
        except StoreError as exc:
            # Counters only: the next flush (or the transfer's end) writes them again.
            log.warning("transfer progress not recorded: %s", exc)

    async def flush_progress_forever(self) -> None:
        """Write byte counters to the database periodically, batched in one transaction."""
        while True:
            await asyncio.sleep(PROGRESS_FLUSH_SECONDS)
            self._flush_progress()
