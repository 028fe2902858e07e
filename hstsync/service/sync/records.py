"""What a process's transfers did, written down: each product's state (in batches, once
its file is final on disk), each failed attempt as it happens, byte counters while the
bytes arrive, and the pass's report for the hook.

:class:`Records` is the :class:`~hstsync.service.sync.fetcher.Fetcher`'s bookkeeping: the
fetcher schedules transfers and tells it what happened; it decides what reaches the
store, when, and in what order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from hstsync.archive import auth_required_message
from hstsync.errors import StoreError
from hstsync.model import ProductState
from hstsync.service.sync.hooks import PassLog
from hstsync.service.sync.jobs import Job, PassProgress
from hstsync.store import ProductMark, Store
from hstsync.transfer import Outcome, Transfer, held_bytes

log = logging.getLogger(__name__)

#: how often bytes-done counters reach the database while transfers run
PROGRESS_FLUSH_SECONDS = 1.0

#: product marks written in one transaction at most (see Records.mark)
MARK_BATCH = 64

Key = tuple[str, str]


class Records:
    """The marks, attempts and byte counters of one process's transfers."""

    def __init__(
        self,
        store: Store,
        passes: PassLog,
        token: Callable[[], str | None],
        display: PassProgress | None = None,
    ) -> None:
        self.store = store
        self._passes = passes
        self._token = token
        self._display = display
        #: each request's proposals, for the message of a product refused for a token
        self.proposals: dict[str, tuple[str, ...]] = {}
        #: bytes held per (request, dataURI) of the transfers under way
        self.progress: dict[Key, int] = {}
        #: the (request, dataURI)s each file under way is fetched for (shared transfers)
        self.keys: dict[Path, list[Key]] = {}
        #: failed attempts already recorded for each (request, dataURI) while its file
        #: retries (each request sharing the file has its own row and its own count)
        self.live_attempts: dict[Key, int] = {}
        #: product marks not written yet, in order (see mark)
        self._marks: list[ProductMark] = []

    def interrupted(self, job: Job) -> None:
        self.flush_marks(quiet=True)  # in order: a queued mark must not land after these
        on_disk = held_bytes(job.dest)
        self.live_attempts.pop((job.request, job.product.data_uri), None)
        for request, uri in self.keys.get(job.dest, [(job.request, job.product.data_uri)]):
            self.progress.pop((request, uri), None)
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.PENDING, bytes_done=on_disk)

    def retrying(self, transfer: Transfer, attempts: int, error: str) -> None:
        """A transfer failed an attempt and will try again: ``status`` shows the attempt
        and its error now, not only once the file is done or has failed for good."""
        self.flush_marks(quiet=True)
        for request, uri in self.keys.get(transfer.dest, ()):
            key = (request, uri)
            self.live_attempts[key] = self.live_attempts.get(key, 0) + 1
            with contextlib.suppress(StoreError):  # the request may be gone already
                self.store.mark(request, uri, ProductState.DOWNLOADING, error=error, attempts=1)

    def record(self, key: tuple[str, str], job: Job, outcome: Outcome) -> None:
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
            reason = self.explain(request, outcome) or str(outcome.state)
            self._passes.failure(request, reason, path=job.dest, data_uri=uri)
        self.mark(
            request,
            uri,
            outcome.state,
            bytes_done=None if done else held_bytes(job.dest),
            error=self.explain(request, outcome),
            # attempts already recorded as they failed (_retrying) are not counted twice
            attempts=max(outcome.attempts - self.live_attempts.pop(key, 0), 0),
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
            self.flush_marks()

    def _request_busy(self, request: str, besides: Path) -> bool:
        """Whether a transfer other than ``besides`` is under way for ``request``."""
        for dest, keys in self.keys.items():  # the transfers under way
            # ``is``: Path equality costs more than this whole loop, and an owner's own
            # entry is its job's Path (a waiter's was removed before it records)
            if dest is besides:
                continue
            for other, _ in keys:
                if other == request:
                    return True
        return False

    def mark(self, request: str, uri: str, state: ProductState, **fields: object) -> None:
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

    def flush_marks(self, *, quiet: bool = False) -> None:
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

    def explain(self, request: str, outcome: Outcome) -> str | None:
        if outcome.state is not ProductState.AUTH_REQUIRED:
            return outcome.error
        return auth_required_message(
            self.proposals.get(request, ()),
            have_token=self._token() is not None,
            refusal=outcome.error or "",
        )

    def count_bytes(self, transfer: Transfer, delta: int) -> None:
        for key in self.keys.get(transfer.dest, ()):
            self.progress[key] = self.progress.get(key, 0) + delta
            if self._display is not None:
                self._display.advanced(key[0], delta)

    def flush_progress(self) -> None:
        self.flush_marks(quiet=True)
        if not self.progress:
            return
        try:
            self.store.record_progress(dict(self.progress))
        except StoreError as exc:
            # Counters only: the next flush (or the transfer's end) writes them again.
            log.warning("transfer progress not recorded: %s", exc)

    async def flush_progress_forever(self) -> None:
        """Write byte counters to the database periodically, batched in one transaction."""
        while True:
            await asyncio.sleep(PROGRESS_FLUSH_SECONDS)
            self.flush_progress()
