"""The daemon's passes: each request's pass a task of the daemon's group, started when
due (``service.daemon.schedule``), cancelled when its manifest goes or changes, and
followed by the mirror's upkeep (the share of files due verified, old attic entries
cleared). A pass that fails on a database write pauses the daemon's writes
(:class:`~hstsync.service.daemon.runtime.WriteGuard`); a bug in one pass marks its
request and leaves the daemon and the other passes running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from hstsync.config import Config
from hstsync.errors import StoreError
from hstsync.model import Request, RequestState
from hstsync.service.daemon.runtime import WriteGuard, first_store_error
from hstsync.service.daemon.schedule import Start, start_due
from hstsync.service.daemon.upkeep import clear_attic, rolling_verify
from hstsync.service.sync import Mirror
from hstsync.store import Store

log = logging.getLogger(__name__)


class Passes:
    """The running passes by request name."""

    def __init__(
        self,
        config: Config,
        writes: WriteGuard,
        wake: asyncio.Event,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self._writes = writes
        self._wake = wake  # set whenever a pass ends: the scheduler looks again
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def idle(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` whose pass is not running."""
        return [name for name in names if name not in self._tasks]

    def start_due(
        self,
        manifests: Mapping[str, Request],
        store: Store,
        mirror: Mirror,
        group: asyncio.TaskGroup,
    ) -> None:
        """Start the pass of every request that is due now and not running."""
        now = self._clock()
        for name, request in manifests.items():
            if name in self._tasks:
                continue
            row = store.get_request(name)
            why = None if row is None else start_due(row, now, self.config.schedule.resync_every)
            if why is None:
                continue
            if why is not Start.WAITING:
                log.info("request %s: %s", name, why)
            self._tasks[name] = group.create_task(self._sync(store, mirror, request))

    async def _sync(self, store: Store, mirror: Mirror, request: Request) -> None:
        try:
            try:
                await mirror.sync(request)
                # the mirror's upkeep after its pass: never before new files
                await rolling_verify(mirror, request)
                await asyncio.to_thread(clear_attic, self.config)
            except* StoreError as group:
                self._writes.failed(first_store_error(group))
        except Exception:
            # A bug must not take the daemon down with it; the request says so.
            log.exception("request %s: unexpected error", request.name)
            with contextlib.suppress(StoreError):
                store.set_request_state(
                    request.name, RequestState.INCOMPLETE, "internal error; see the service log"
                )
        finally:
            self._tasks.pop(request.name, None)
            self._wake.set()

    async def cancel(self, name: str) -> None:
        """Stop ``name``'s pass, if it runs, and wait for it: its partial files stay for
        resume and its rows go back to pending."""
        task = self._tasks.get(name)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def cancel_all(self) -> None:
        """Shutdown: every pass is cancelled; the daemon's group waits for them."""
        for task in self._tasks.values():
            task.cancel()
