"""One pass of mirroring: resolve requests, decide what to fetch, fetch it, record it.

:class:`Mirror` owns the process's HTTP session and downloader; the daemon and
``run --once`` both drive it. Deciding (which products need a transfer, which
state a request ends in) is plain functions; doing (HTTP, SQL, files) is the
methods around them. Every state change is written to the store before the
step that depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import aiohttp

from hstsync.archive.auth import (
    Token,
    auth_required_message,
    check_transport,
    session_warning,
    user_of,
)
from hstsync.archive.cloud import cloud_source
from hstsync.archive.resolve import Resolver, preload
from hstsync.config import Config
from hstsync.errors import HstsyncError, ManifestError, StoreError, UnsafePathError
from hstsync.model import Product, ProductState, Request, RequestState, counts_of, human_bytes
from hstsync.service.planner import free_space, room_for
from hstsync.service.results import results_path, write_results
from hstsync.store.db import ProductRow, Store
from hstsync.transfer.downloader import Downloader, Outcome, Transfer, after_fallback, open_session
from hstsync.transfer.ranges import held_bytes

log = logging.getLogger(__name__)

#: how often bytes-done counters reach the database while transfers run
PROGRESS_FLUSH_SECONDS = 1.0

DOWNLOAD_PATH = "/api/v0.1/Download/file"


class Progress(Protocol):
    """What a pass reports as it goes; the CLI draws it (``cli.progress``), the daemon does not."""

    def planned(self, request: str, files: int, size: int) -> None: ...

    def advanced(self, request: str, delta: int) -> None: ...

    def file_done(self, request: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    """A product row that needs a transfer in this pass, with where it goes."""

    request: str
    product: Product
    dest: Path


def download_url(server: str, data_uri: str) -> str:
    # astroquery's own form (download_file): quote everything but ':' and '/'.
    from urllib.parse import quote

    return f"{server}{DOWNLOAD_PATH}?uri={quote(data_uri, safe=':/')}"


def needs_transfer(row: ProductRow, on_disk: int | None, *, have_token: bool) -> bool:
    """Whether a product must be fetched in this pass.

    ``on_disk`` is the size of the file under its final name, or None.
    A done product whose file is intact is left alone; a done product whose file
    vanished or changed is fetched again (a mirror, not a log). A product the
    archive refused for want of a token is only tried again once a token exists.
    """
    if row.state is ProductState.DONE:
        return on_disk != row.product.size
    if row.state is ProductState.AUTH_REQUIRED:
        return have_token
    return True


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _invalid_reason(product: Product) -> str | None:
    """Why a catalogue row cannot be fetched at all, or None."""
    try:
        product.relpath()
    except UnsafePathError as exc:
        return f"refused: {exc}"
    if product.size < 0:
        return "the catalogue gives no size for this file"
    if not product.data_uri:
        return "the catalogue gives no dataURI for this file"
    return None


class Mirror:
    """The downloading half of hstsync for one process: session, downloader, store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        token: str | None = None,
        token_source: Callable[[], Token | None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        # The token goes to config.mast.server only: queries (a host-scoped cookie) and
        # downloads (download_url is always on that server; download.py drops it on a
        # redirect elsewhere), never to the cloud copy (``_download``, no headers).
        # It is sent for every MAST product, public ones included: the
        # same host already gets it with every query, and a product's rights can change
        # between resolution and transfer.
        self.token = token
        if token:
            check_transport(config.mast.server)
        #: looked up again at each request's pass, so a daemon picks up a new token
        self._token_source = token_source
        self._proposals: dict[str, tuple[str, ...]] = {}
        self._display = progress
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
        self._resolver: Resolver | None = None
        self._resolver_lock = asyncio.Lock()

    async def __aenter__(self) -> Mirror:
        self._session = open_session(self.config.download)
        self._downloader = Downloader(
            self._session, self.config.download, on_progress=self._count_bytes
        )
        self._cloud_downloader = Downloader(
            self._session, replace(self.config.download, retries=0), on_progress=self._count_bytes
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._flush_progress()
        if self._session is not None:
            await self._session.close()

    # -- resolving ----------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load astroquery in a worker thread, so the first request resolves at once."""
        try:
            seconds = await asyncio.to_thread(preload)
        except Exception as exc:  # the first resolution will say what is wrong
            log.warning("cannot load astroquery: %s", exc)
            return
        log.debug("astroquery loaded in %.2f s", seconds)

    async def _get_resolver(self) -> Resolver:
        async with self._resolver_lock:
            if self._resolver is None:
                self._resolver = await asyncio.to_thread(
                    Resolver, self.config.mast.server, self.token
                )
                if self.token:
                    await self._check_session(self._resolver)
            return self._resolver

    async def _check_session(self, resolver: Resolver) -> None:
        """Say early, once per token, when it is refused or about to expire."""
        try:
            info = await asyncio.to_thread(resolver.session_info)
        except HstsyncError as exc:
            log.warning("cannot check the MAST token: %s", exc)
            return
        warning = session_warning(info)
        if warning is not None:
            log.warning("%s", warning)
        else:
            log.info("MAST token accepted for %s", user_of(info))

    def _refresh_token(self) -> None:
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
        self._resolver = None  # its session carries the old token

    async def resolve(self, request: Request) -> list[Product] | None:
        """Resolve and record; None when the request could not be resolved."""
        name = request.name
        self.store.set_request_state(name, RequestState.RESOLVING)
        try:
            resolver = await self._get_resolver()
            # astroquery blocks on requests; a worker thread keeps the loop (and the
            # transfers of other requests) running meanwhile. One resolution at a
            # time: astroquery's session and lazy imports are not thread-safe.
            async with self._resolver_lock:
                products = await asyncio.to_thread(resolver.resolve, request)
        except ManifestError as exc:
            log.warning("request %s: invalid: %s", name, exc)
            self.store.set_request_state(name, RequestState.INVALID, str(exc))
            return None
        except HstsyncError as exc:
            log.warning("request %s: cannot resolve: %s", name, exc)
            self.store.set_request_state(name, RequestState.INCOMPLETE, str(exc))
            return None
        diff = self.store.replace_products(name, products)
        log.info(
            "request %s: resolved %d products (%d new, %d changed, %d removed)",
            name,
            len(products),
            diff.new,
            diff.changed,
            diff.removed,
        )
        return products

    # -- planning -------------------------------------------------------------------------

    def plan(self, name: str) -> list[Job]:
        """The transfers a request needs now; rows that can never be fetched are failed."""
        jobs: list[Job] = []
        mirror = self.config.paths.mirror
        for row in self.store.products(name):
            reason = _invalid_reason(row.product)
            if reason is not None:
                if row.state is not ProductState.FAILED or row.last_error != reason:
                    # %r: a hostile name must not forge log lines (newlines, NUL)
                    log.warning("request %s: %r: %s", name, row.product.filename, reason)
                    self.store.mark(name, row.product.data_uri, ProductState.FAILED, error=reason)
                continue
            dest = mirror / row.product.relpath()
            if needs_transfer(row, _file_size(dest), have_token=self.token is not None):
                jobs.append(Job(name, row.product, dest))
        return jobs

    # -- downloading ------------------------------------------------------------------------

    async def sync(self, request: Request) -> RequestState:
        """Resolve one request, fetch what it lacks, and settle its state."""
        self._refresh_token()
        self._proposals[request.name] = request.proposal_ids
        try:
            return await self._sync(request)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # removed while running
                self.store.set_request_state(request.name, RequestState.QUEUED)
            raise

    async def _sync(self, request: Request) -> RequestState:
        products = await self.resolve(request)
        name = request.name
        current = self.store.get_request(name)
        if products is None and current is not None and current.state is RequestState.INVALID:
            return RequestState.INVALID
        # Even when resolution failed we still fetch what an earlier pass resolved.
        jobs = self.plan(name)
        shortfall = self._shortfall(jobs)
        if shortfall is not None:
            log.warning("request %s: %s", name, shortfall)
            self.store.set_request_state(name, RequestState.INCOMPLETE, shortfall, resolved=True)
            return RequestState.INCOMPLETE
        if jobs:
            size = sum(j.product.size for j in jobs)
            if self._display is not None:
                self._display.planned(name, len(jobs), size)
            self.store.set_request_state(name, RequestState.DOWNLOADING, resolved=True)
            log.info("request %s: %d files to fetch, %d bytes", name, len(jobs), size)
            await self._fetch_all(jobs)
        return self.settle(name, resolution_error=products is None)

    async def _fetch_all(self, jobs: Sequence[Job]) -> None:
        """Fetch every job, ``concurrency`` at a time, in order.

        A fixed set of workers takes the jobs one after another: a task per job, made
        up front, held a coroutine frame per file for the whole pass, and memory grew
        with the size of the program.
        """
        queue = iter(jobs)

        async def worker() -> None:
            for job in queue:  # shared: each job is taken by exactly one worker
                await self.fetch(job)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(len(jobs), self.config.download.concurrency)):
                group.create_task(worker())

    def _shortfall(self, jobs: Sequence[Job]) -> str | None:
        """Why the mirror cannot hold these transfers, or None when it can."""
        needed = sum(max(job.product.size - (held_bytes(job.dest)), 0) for job in jobs)
        free = free_space(self.config.paths.mirror)
        if room_for(needed, free):
            return None
        return (
            f"not enough room: {human_bytes(needed)} to fetch, "
            f"{human_bytes(free)} free on the mirror's filesystem"
        )

    def settle(self, name: str, *, resolution_error: bool = False) -> RequestState:
        rows = self.store.products(name)
        self._write_results(name, rows)
        counts = counts_of(row.state for row in rows)
        current = self.store.get_request(name)
        if resolution_error and current is not None:
            # keep the resolution error visible; the request is not complete
            self.store.set_request_state(name, RequestState.INCOMPLETE, current.last_error)
            return RequestState.INCOMPLETE
        if counts.failed or counts.auth_required or counts.pending:
            state = RequestState.INCOMPLETE
            parts = []
            if counts.failed:
                parts.append(f"{counts.failed} failed{_first_failure(rows)}")
            if counts.auth_required:
                parts.append(f"{counts.auth_required} need a MAST token")
            if counts.pending:
                parts.append(f"{counts.pending} not fetched")
            error: str | None = ", ".join(parts)
        else:
            state, error = RequestState.DONE, None
        self.store.set_request_state(name, state, error, resolved=True)
        log.info(
            "request %s: %s (%d/%d done)",
            name,
            state,
            counts.done,
            counts.total,
        )
        return state

    def _write_results(self, name: str, rows: Sequence[ProductRow]) -> None:
        """astroquery's manifest table for the request, as ECSV beside the mirror."""
        server = self.config.mast.server
        urls = {row.product.data_uri: download_url(server, row.product.data_uri) for row in rows}
        try:
            write_results(
                results_path(self.config.paths.mirror, name), rows, self.config.paths.mirror, urls
            )
        except OSError as exc:
            log.warning("request %s: cannot write the results table (%s)", name, exc.strerror)

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
            raise

    async def _fetch_owned(self, key: tuple[str, str], job: Job) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[job.dest] = future
        self._progress_keys[job.dest] = [key]
        try:
            async with self._slots:
                assert self._downloader is not None, "Mirror used outside 'async with'"
                self.store.mark(job.request, job.product.data_uri, ProductState.DOWNLOADING)
                self._progress[key] = held_bytes(job.dest)
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
                    url=cloud_url, dest=job.dest, size=job.product.size, label=f"{label} (cloud)"
                )
            )
            if first.state is ProductState.DONE:
                return first
            log.info("%s: the cloud copy failed (%s); fetching from MAST", label, first.error)
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        outcome = await self._downloader.fetch(
            Transfer(
                url=download_url(self.config.mast.server, job.product.data_uri),
                dest=job.dest,
                size=job.product.size,
                label=label,
                headers=headers,
            )
        )
        return outcome if first is None else after_fallback(first, outcome)

    def _interrupted(self, job: Job) -> None:
        on_disk = held_bytes(job.dest)
        for request, uri in self._progress_keys.get(
            job.dest, [(job.request, job.product.data_uri)]
        ):
            self._progress.pop((request, uri), None)
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.PENDING, bytes_done=on_disk)

    def _record(self, key: tuple[str, str], job: Job, outcome: Outcome) -> None:
        request, uri = key
        if self._display is not None and outcome.state is ProductState.DONE:
            self._display.file_done(request)
        bytes_done = job.product.size if outcome.state is ProductState.DONE else None
        if bytes_done is None:
            bytes_done = held_bytes(job.dest)
        self.store.mark(
            request,
            uri,
            outcome.state,
            bytes_done=bytes_done,
            error=self._explain(request, outcome),
            attempts=outcome.attempts,
        )

    def _explain(self, request: str, outcome: Outcome) -> str | None:
        if outcome.state is not ProductState.AUTH_REQUIRED:
            return outcome.error
        return auth_required_message(
            self._proposals.get(request, ()),
            have_token=self.token is not None,
            refusal=outcome.error or "",
        )

    # -- progress -----------------------------------------------------------------------------

    def _count_bytes(self, transfer: Transfer, delta: int) -> None:
        for key in self._progress_keys.get(transfer.dest, ()):
            self._progress[key] = self._progress.get(key, 0) + delta
            if self._display is not None:
                self._display.advanced(key[0], delta)

    def _flush_progress(self) -> None:
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


def _first_failure(rows: Iterable[ProductRow]) -> str:
    """`` (first: FILE: why)``: the request's error says why, not only how many."""
    for row in rows:
        if row.state is ProductState.FAILED and row.last_error:
            return f" (first: {row.product.filename}: {row.last_error})"
    return ""


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


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
    log.info("pass over %d requests took %.1f s", len(requests), time.monotonic() - started)
    return results


def exit_code(states: Iterable[RequestState]) -> int:
    """SPEC's codes: 0 when every request is done, 1 otherwise."""
    return 0 if all(state is RequestState.DONE for state in states) else 1
