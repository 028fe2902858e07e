"""The long-running service, ``hstsync run``: take manifests from the request
directory and keep them mirrored until told to stop.

:class:`Daemon` is the lifecycle (signals, startup, the main loop, shutdown) around
three rooms: the directory watcher and its surveys (``service.daemon.requestdir``), the
manifests they become (``service.daemon.manifests``) and each request's pass
(``service.daemon.passes``). What is due when is decided by ``service.daemon.schedule``
(pure); what every run stands on (directories, run lock, store, heartbeat) is
``service.daemon.runtime``. ``run --once`` is :mod:`~hstsync.service.daemon.once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from hstsync.archive import find_token
from hstsync.config import Config
from hstsync.errors import DiskFullError
from hstsync.service.daemon.manifests import Manifests
from hstsync.service.daemon.passes import Passes
from hstsync.service.daemon.requestdir import Intake, Watcher
from hstsync.service.daemon.runtime import (
    STOP_SIGNALS,
    DatabaseFile,
    WriteGuard,
    keeping_alive,
    opened_store,
    raise_open_files_limit,
    recover,
)
from hstsync.service.daemon.schedule import next_wake
from hstsync.service.daemon.sdnotify import sd_notify
from hstsync.service.daemon.web import serving_status
from hstsync.service.daemon.workers import use_worker_threads
from hstsync.service.sync import Mirror
from hstsync.store import Store

__all__ = ["Daemon", "run_forever"]

log = logging.getLogger(__name__)

#: a manifest written in place is taken once unchanged for this long (writers that
#: skip the .tmp rename); one renamed into place is taken at once
#: (``schedule.finished``)
SETTLE_SECONDS = 0.5
#: the listing is re-read this often even without file events
RESCAN_SECONDS = 30.0
#: ... and this often while the request directory is missing
MISSING_RESCAN_SECONDS = 3.0


class Daemon:
    """The long-running service: watch, schedule, mirror, re-sync, shut down cleanly.

    The request directory's listing is the truth; watchfiles events wake the
    scheduler early and tell renames. A manifest renamed into place is taken at once
    (``schedule.renamed_in``, ``schedule.finished``); one written in place once its mtime is
    ``settle`` seconds old and its size and mtime held still between two looks, so a
    writer that ignores the ``.tmp``-then-rename convention is not read half-way.
    """

    def __init__(
        self,
        config: Config,
        *,
        settle: float = SETTLE_SECONDS,
        rescan_every: float = RESCAN_SECONDS,
    ) -> None:
        self.config = config
        self.settle = settle
        self.rescan_every = rescan_every
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        #: set once the watcher reports events and the first scan is done (READY=1)
        self.ready = asyncio.Event()
        self._intake = Intake(config.paths.requests, settle)
        self._watcher = Watcher(self._intake, self._wake, self._stop)
        self._signals = 0
        #: set by a second signal: stop without waiting for in-flight work
        self.force_exit = False
        self._main: asyncio.Task[int] | None = None
        self._writes = WriteGuard(on_failure=self._wake.set)
        self._passes = Passes(config, self._writes, self._wake, clock=lambda: _now())
        self._manifests = Manifests(self._intake, self._watcher, self._passes)
        #: the daemon stopped itself (its database deleted under it): exit 1
        self._failed = False

    # -- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work; in-flight transfers are cancelled and left resumable.

        Like uvicorn: a second call (a second signal) sets :attr:`force_exit` and
        cancels whatever the graceful stop still waits for; the cleanup that closes
        the store runs either way.
        """
        self._signals += 1
        if self._signals > 1:
            if not self.force_exit:
                log.warning("second signal: stopping without waiting for in-flight work")
                self.force_exit = True
                if self._main is not None:
                    self._main.cancel()
            return
        log.info("stopping: finishing in-flight writes")
        sd_notify("STOPPING=1")
        self._stop.set()
        self._watcher.end()
        self._wake.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        use_worker_threads(loop)
        raise_open_files_limit()
        self._main = asyncio.current_task()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.stop)
        mast = self.config.mast
        token = find_token(mast.token_file, server=mast.server)
        try:
            with opened_store(self.config) as (store, lock):
                database = DatabaseFile.of(self.config.paths.database)
                # The token is looked up again at each pass: a token installed or
                # renewed while the daemon runs is used without a restart.
                async with (
                    Mirror(
                        self.config,
                        store,
                        token=token.value if token else None,
                        token_source=lambda: find_token(mast.token_file, server=mast.server),
                    ) as mirror,
                    keeping_alive(lock),
                ):
                    await self._serve(store, mirror, database)
        except asyncio.CancelledError:
            # a second signal: the store was closed on the way out all the same
            if not self.force_exit:
                raise
            while self._main is not None and self._main.uncancel():
                pass
        except DiskFullError as exc:
            log.error("%s", exc)  # exit 1: systemd may try again later
            return 1
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        log.info("stopped")
        return 1 if self.force_exit or self._failed else 0

    async def _serve(self, store: Store, mirror: Mirror, database: DatabaseFile) -> None:
        # The status endpoint (if configured) is up before the first scan and stays up
        # until every task of the group has finished.
        self._manifests.notices = mirror.notices
        async with serving_status(self.config), asyncio.TaskGroup() as group:
            watcher = group.create_task(self._watcher.run())
            flusher = group.create_task(mirror.flush_progress_forever())
            teller = group.create_task(mirror.notices.tell_forever())
            group.create_task(mirror.warm_up())
            await self._watcher.started()
            with self._writes():
                recover(store)
            with self._writes():
                await self._manifests.rescan(store, first=True)
            sd_notify("READY=1", f"STATUS=watching {self.config.paths.requests}")
            self.ready.set()
            log.info(
                "watching %s, mirroring into %s",
                self.config.paths.requests,
                self.config.paths.mirror,
            )
            while not self._stop.is_set():
                if not self._writes.pause:
                    with self._writes():
                        self._passes.start_due(self._manifests.current, store, mirror, group)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_for(store))
                self._wake.clear()
                if (gone := database.changed()) is not None and not self._stop.is_set():
                    # exit 1: under systemd a restart opens the file there now
                    log.error("%s", gone)
                    self._failed = True
                    self.stop()
                if not self._stop.is_set() and not self._writes.pause:
                    with self._writes():
                        await self._manifests.rescan(store)
            # Shutdown travels as cancellation: downloads close their .part files,
            # rows go back to pending, and the group waits for every task.
            self._passes.cancel_all()
            watcher.cancel()
            flusher.cancel()
            teller.cancel()

    def _sleep_for(self, store: Store) -> float:
        if self._writes.pause:
            return self._writes.pause
        if self._intake.unsettled:
            return min(self.settle, 0.25)
        wait = self.rescan_every
        if self._intake.missing:  # no file event tells when a share comes back
            wait = min(wait, MISSING_RESCAN_SECONDS)
        if self._watcher.restarting:  # poll until the new watch is up
            wait = min(wait, 0.25)
        idle = (store.get_request(name) for name in self._passes.idle(self._manifests.current))
        rows = [row for row in idle if row is not None]
        return next_wake(rows, _now(), self.config.schedule.resync_every, longest=wait)


def _now() -> datetime:
    """The scheduler's clock (tests move it)."""
    return datetime.now(UTC)


def run_forever(config: Config) -> int:
    """``hstsync run``: serve until SIGTERM or SIGINT."""
    return asyncio.run(Daemon(config).run())
