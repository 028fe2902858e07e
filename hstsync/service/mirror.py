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
import os
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
from hstsync.archive.resolve import preload
from hstsync.config import Config
from hstsync.errors import HstsyncError, ManifestError, StoreError, UnsafePathError
from hstsync.model import (
    Product,
    ProductState,
    Request,
    RequestState,
    counts_of,
    human_bytes,
    settled_request_state,
)
from hstsync.service.hooks import PassLog
from hstsync.service.lookup import Lookups
from hstsync.service.planner import free_space, room_for
from hstsync.service.results import results_path, write_results
from hstsync.store.db import ProductRow, Store
from hstsync.transfer.downloader import Downloader, Outcome, Transfer, open_session
from hstsync.transfer.outcome import after_fallback
from hstsync.transfer.ranges import held_bytes
from hstsync.transfer.verify import CorruptFileError, needs_verification, verify_file

log = logging.getLogger(__name__)

#: how often bytes-done counters reach the database while transfers run
PROGRESS_FLUSH_SECONDS = 1.0

DOWNLOAD_PATH = "/api/v0.1/Download/file"


class Progress(Protocol):
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
        if row.product.size is None:  # never the case once a transfer recorded it
            return on_disk is None
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
    if product.problem is not None:
        return product.problem
    try:
        product.relpath()
    except UnsafePathError as exc:
        return f"refused: {exc}"
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
        self._lookups = Lookups(config, token)
        #: the token whose session has been checked (once per token)
        self._checked: str | None = None
        #: what each running pass brought and left failed, for the on_change hook
        self._passes = PassLog()
        #: failed attempts of each file in flight already recorded while it retries
        self._live_attempts: dict[Path, int] = {}

    async def __aenter__(self) -> Mirror:
        self._session = open_session(self.config.download)
        self._downloader = Downloader(
            self._session,
            self.config.download,
            on_progress=self._count_bytes,
            on_retry=self._retrying,
            trusted_hosts=self.config.mast.token_hosts,
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
        self._lookups.set_token(value)  # idle resolvers' sessions carry the old token

    async def resolve(self, request: Request) -> list[Product] | None:
        """Resolve and record; None when the request could not be resolved."""
        name = request.name
        previous = self.store.get_request(name)
        self.store.set_request_state(
            name, RequestState.RESOLVING, previous.last_error if previous else None
        )
        try:
            await self._check_session()
            # Each archive call in a daemon thread, under [mast] timeout, retried when
            # transient (service.lookup): the loop, and other requests' lookups and
            # transfers, carry on meanwhile.
            products = await self._lookups.resolve(request)
        except ManifestError as exc:
            log.warning("request %s: invalid: %s", name, exc)
            self._passes.failure(name, str(exc))
            self.store.set_request_state(name, RequestState.INVALID, str(exc))
            return None
        except HstsyncError as exc:
            row = self.store.lookup_failed(name, str(exc))
            log.warning(
                "request %s: cannot resolve: %s (looked up again at %s)",
                name,
                exc,
                row.next_lookup,
            )
            self._passes.failure(name, str(exc))
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

    async def _screened(self, jobs: list[Job]) -> list[Job]:
        """The jobs, after checking files already at their destination.

        A file found where a product goes (astroquery's own tree, an earlier copy) with
        the expected size is only "already present" once it passes the same content
        check as a download (``transfer.verify``): one that fails is moved aside to
        ``FILE.rejected`` and fetched, never accepted.
        """
        for job in jobs:
            on_disk = _file_size(job.dest)
            if on_disk is None or not needs_verification(job.dest.name):
                continue
            if job.product.size is not None and on_disk != job.product.size:
                continue  # the transfer replaces it
            try:
                await asyncio.to_thread(verify_file, job.dest, job.dest.name)
            except CorruptFileError as exc:
                aside = job.dest.with_name(job.dest.name + ".rejected")
                log.warning(
                    "request %s: %s already in the mirror is not the product (%s); "
                    "moved aside to %s and fetched",
                    job.request,
                    job.dest,
                    exc,
                    aside.name,
                )
                with contextlib.suppress(OSError):
                    os.replace(job.dest, aside)
            except OSError as exc:
                log.warning("request %s: cannot read %s (%s)", job.request, job.dest, exc)
        return jobs

    # -- downloading ------------------------------------------------------------------------

    async def sync(self, request: Request) -> RequestState:
        """Resolve one request, fetch what it lacks, and settle its state."""
        self._refresh_token()
        self._proposals[request.name] = request.proposal_ids
        self._passes.start(request.name)
        try:
            state = await self._sync(request)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # removed while running
                self.store.set_request_state(request.name, RequestState.QUEUED)
            raise
        await self._passes.finish(self.config, self.store, request.name, str(state))
        return state

    async def _sync(self, request: Request) -> RequestState:
        products = await self.resolve(request)
        name = request.name
        current = self.store.get_request(name)
        lookup_error: str | None = None
        if products is None and current is not None:
            if current.state is RequestState.INVALID:
                return RequestState.INVALID
            lookup_error = current.last_error or "the lookup failed"
        resolved = lookup_error is None
        # Even when resolution failed we still fetch what an earlier pass resolved.
        jobs = await self._screened(self.plan(name))
        shortfall = self._shortfall(jobs)
        if shortfall is not None:
            log.warning("request %s: %s", name, shortfall)
            self._passes.failure(name, lookup_error or shortfall)
            self.store.set_request_state(
                name, RequestState.INCOMPLETE, lookup_error or shortfall, resolved=resolved
            )
            return RequestState.INCOMPLETE
        if jobs:
            size = sum(j.product.size or 0 for j in jobs)
            # files already complete on disk are only recorded, not fetched
            missing = [
                j for j in jobs if j.product.size is None or _file_size(j.dest) != j.product.size
            ]
            if self._display is not None:
                held = size - sum(j.product.size or 0 for j in missing)
                held += sum(held_bytes(j.dest) for j in missing)
                self._display.planned(name, len(jobs), size, held)
            self.store.set_request_state(
                name, RequestState.DOWNLOADING, lookup_error, resolved=resolved
            )
            log.info(
                "request %s: %d files to fetch, %d bytes",
                name,
                len(missing),
                sum(max((j.product.size or 0) - held_bytes(j.dest), 0) for j in missing),
            )
            await self._fetch_all(jobs)
        return self.settle(name, lookup_error=lookup_error)

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
        needed = sum(max((job.product.size or 0) - held_bytes(job.dest), 0) for job in jobs)
        free = free_space(self.config.paths.mirror)
        if room_for(needed, free):
            return None
        return (
            f"not enough room: {human_bytes(needed)} to fetch, "
            f"{human_bytes(free)} free on the mirror's filesystem"
        )

    def settle(self, name: str, *, lookup_error: str | None = None) -> RequestState:
        """The request's state after a pass, from its products' states.

        ``lookup_error``: this pass's lookup failed (the products are those of the last
        successful one). A request whose files are all done stays ``done``, saying
        "last re-sync failed: …"; one never looked up is ``incomplete`` with the reason.
        Either way the next lookup comes on the failed-lookup schedule.
        """
        rows = self.store.products(name)
        self._write_results(name, rows)
        counts = counts_of(row.state for row in rows)
        if lookup_error is not None:
            kept = RequestState.INCOMPLETE
            if counts.total and settled_request_state(counts) is RequestState.DONE:
                kept, lookup_error = RequestState.DONE, f"last re-sync failed: {lookup_error}"
            self.store.set_request_state(name, kept, lookup_error)
            log.info("request %s: %s (%d/%d done)", name, kept, counts.done, counts.total)
            return kept
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
            self._live_attempts.pop(job.dest, None)
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
                root=self.config.paths.mirror,
                public=job.product.is_public,
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

    def _retrying(self, transfer: Transfer, attempts: int, error: str) -> None:
        """A transfer failed an attempt and will try again: ``status`` shows the attempt
        and its error now, not only once the file is done or has failed for good."""
        self._live_attempts[transfer.dest] = self._live_attempts.get(transfer.dest, 0) + 1
        for request, uri in self._progress_keys.get(transfer.dest, ()):
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.DOWNLOADING, error=error, attempts=1)

    def _record(self, key: tuple[str, str], job: Job, outcome: Outcome) -> None:
        request, uri = key
        if self._display is not None and outcome.state is ProductState.DONE:
            self._display.file_done(request)
        done = outcome.state is ProductState.DONE
        if done and (outcome.attempts or outcome.fetched):
            size = outcome.size if outcome.size is not None else job.product.size
            self._passes.new_file(request, job.dest, size or 0, uri)
        elif outcome.state in (ProductState.FAILED, ProductState.AUTH_REQUIRED):
            reason = self._explain(request, outcome) or str(outcome.state)
            self._passes.failure(request, reason, path=job.dest, data_uri=uri)
        self.store.mark(
            request,
            uri,
            outcome.state,
            bytes_done=None if done else held_bytes(job.dest),
            error=self._explain(request, outcome),
            # attempts already recorded as they failed (_retrying) are not counted twice
            attempts=max(outcome.attempts - self._live_attempts.get(job.dest, 0), 0),
            # the server's size, when it won over the catalogue's or the catalogue had
            # none: the product's size from now on, so the next pass finds it present
            size=outcome.size if done else None,
            size_note=outcome.size_note if done else None,
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
