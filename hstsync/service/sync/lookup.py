"""Archive lookups from the event loop: every call bounded, retried, never blocking exit.

astroquery is synchronous and its portal calls carry no socket timeout of their own
(``Resolver`` gives its session one). This module owns the async side of resolution:

- **Deadline.** Each archive call (the observation query, one batch of product lists,
  the session check) runs in its own *daemon* thread and is abandoned after
  ``[mast] timeout`` seconds: "the archive did not answer within N s". Not the default
  executor: ``asyncio.run`` joins its threads at exit, so one hung call would keep a
  stopped daemon alive; a daemon thread dies with the process.
- **No one-at-a-time lock.** A Resolver is not thread-safe, so each call takes one from
  a small pool (or makes one); a call that timed out keeps its Resolver (its thread
  may still be using it) and the pool forgets it. A hung lookup never stalls another.
- **Retry.** Transient trouble (:class:`ArchiveUnavailable`: no connection, no answer
  in time, 5xx, 429, ``status: ERROR``) is retried with the transfers' backoff
  (:func:`hstsync.config.backoff_wait`) up to ``[download] retries`` times; each batch
  of obsids on its own, so a big program's failed batch does not repeat the others.
  A JWST batch of several obsids that fails is not retried whole: it is asked for in
  halves at once, and the request's later batches are no bigger (whole-proposal JWST
  lists time out); the size reached is where its next resolution starts, doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from hstsync.archive import (
    AskPage,
    Batcher,
    Claims,
    ObservationPage,
    Resolver,
    Sieve,
    Walk,
    batch_sizes,
    halving,
)
from hstsync.config import Config, backoff_wait
from hstsync.errors import ArchiveUnavailable
from hstsync.model import TIME_FORMAT, Product, Request

log = logging.getLogger(__name__)

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T], deadline: float | None) -> T:
    """``fn()`` in a new daemon thread; :class:`TimeoutError` after ``deadline`` seconds.

    On timeout (or cancellation) the thread is left to finish on its own; its result
    is dropped. Being a daemon thread, it never holds up the process's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task, raised there
            error = exc
            deliver: Callable[[], None] = lambda: settle(lambda: future.set_exception(error))  # noqa: E731
        else:
            deliver = lambda: settle(lambda: future.set_result(result))  # noqa: E731
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(deliver)

    threading.Thread(target=run, name="hstsync-lookup", daemon=True).start()
    return await asyncio.wait_for(future, deadline)


def _product_table(resolver: Resolver, obsids: list[str]) -> Any:
    return resolver.product_table(obsids)


def _observations(resolver: Resolver, request: Request, page: int) -> ObservationPage:
    return resolver.observations(request, page)


def _select(
    resolver: Resolver, request: Request, table: Any, claims: Claims, sieve: Sieve | None
) -> list[Product]:
    return resolver.select(request, [table], claims, sieve)


class Lookups:
    """Resolution of requests for one process: bounded, retried, concurrent."""

    def __init__(
        self,
        config: Config,
        token: str | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._token = token
        self._sleep = sleep
        self._idle: list[Resolver] = []
        #: the batch size each request's last resolution ended with, where its product
        #: lists were halved (its next starts at twice that)
        self._limits: dict[str, int] = {}

    @property
    def timeout(self) -> float:
        return self.config.mast.timeout

    def set_token(self, token: str | None) -> None:
        """Use ``token`` from now on; idle Resolvers carry the old one and are dropped."""
        self._token = token
        self._idle.clear()

    async def resolve_batches(
        self,
        request: Request,
        sieve: Sieve | None = None,
        *,
        on_retry: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[list[Product], None]:
        """The request's products one batch of observations at a time: the observation
        query, then per batch its product list and the selection. The caller acts on a
        batch (records, plans, fetches) before the next is asked for, so a big program's
        transfers start with its first batch and its list is never held whole.
        ``sieve`` follows what the filters let through; ``on_retry`` is told, before each
        wait, what failed and when it is tried again."""
        claims = Claims()
        learned = self._limits.get(request.name)
        batcher = Batcher(
            batch_sizes(request.collection), limit=None if learned is None else 2 * learned
        )

        def halved(batch: list[str], exc: ArchiveUnavailable) -> None:
            log.warning("%s", halving(request.name, batch, exc))
            self._limits[request.name] = batcher.limit

        steps, asked = Walk(batcher, sieve, halved), 0
        while (step := steps.next()) is not None:
            if isinstance(step, AskPage):
                what = f"request {request.name}: observations, page {step.page}"
                page = functools.partial(_observations, request=request, page=step.page)
                steps.answer(await self._retried(page, what, on_retry))
                continue
            asked += 1
            what = f"request {request.name}: product list {asked}"
            listed = functools.partial(_product_table, obsids=step.obsids)
            try:
                if step.halved_on_failure:
                    table = await self._call(listed)  # on failure: halves, not the same again
                else:
                    table = await self._retried(listed, what, on_retry)
            except ArchiveUnavailable as exc:
                steps.fail(exc)
                continue
            yield await self._call(
                functools.partial(_select, request=request, table=table, claims=claims, sieve=sieve)
            )
            steps.answer()
        if batcher.limit >= batcher.sizes.size:
            self._limits.pop(request.name, None)
        else:
            self._limits[request.name] = batcher.limit

    async def cloud_keys(self, data_uris: list[str]) -> dict[str, str]:
        """The public bucket's keys of these products, from MAST's path lookup
        (``Resolver.cloud_keys``); one bounded call, not retried: a product without a
        key is fetched from MAST."""
        return await self._call(lambda r: r.cloud_keys(data_uris))

    async def session_info(self) -> dict[str, Any]:
        """The archive's view of the token; one bounded call, not retried."""
        return await self._call(lambda r: r.session_info())

    async def _retried(
        self,
        step: Callable[[Resolver], T],
        what: str,
        on_retry: Callable[[str], None] | None = None,
    ) -> T:
        """``what``: "request NAME: the step", for the log; ``on_retry`` gets the step,
        its error and the next try's time, for the request's ``last_error``."""
        cfg = self.config.download

        def announce(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            attempt = f"attempt {state.attempt_number} of {cfg.retries + 1} failed"
            log.warning("%s: %s; retrying in %.1f s (%s)", what, exc, state.upcoming_sleep, attempt)
            if on_retry is not None:
                at = datetime.now(UTC) + timedelta(seconds=state.upcoming_sleep)
                step_name = what.partition(": ")[2] or what
                on_retry(f"{step_name}: {exc}; trying again at {at:{TIME_FORMAT}} ({attempt})")

        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(cfg.retries + 1),
            wait=backoff_wait(cfg),
            retry=retry_if_exception_type(ArchiveUnavailable),
            before_sleep=announce,
            reraise=True,
        )
        result: T = await retrying(self._call, step)
        return result

    async def _call(self, step: Callable[[Resolver], T]) -> T:
        """One archive call on an idle Resolver, within ``[mast] timeout``."""
        resolver = self._idle.pop() if self._idle else await self._new_resolver()
        token = self._token
        try:
            result = await in_daemon_thread(lambda: step(resolver), self.timeout)
        except TimeoutError:
            # its thread may still be inside astroquery: never hand it out again
            raise ArchiveUnavailable(
                f"the archive did not answer within {self.timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            raise  # as for a timeout: its thread may still be using it
        except BaseException:
            self._give_back(resolver, token)
            raise
        self._give_back(resolver, token)
        return result

    async def _new_resolver(self) -> Resolver:
        server, token, timeout = self.config.mast.server, self._token, self.timeout
        # No network here (imports and a client object), but astroquery's first import
        # takes a while: off the loop, and in a daemon thread like every call.
        return await in_daemon_thread(lambda: Resolver(server, token, timeout=timeout), None)

    def _give_back(self, resolver: Resolver, token: str | None) -> None:
        if token == self._token:
            self._idle.append(resolver)
