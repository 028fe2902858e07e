"""The service: take manifests from the request directory and keep them mirrored.

``run_once`` is one pass (``hstsync run --once``); :class:`Daemon` is the long-running
service (``run_forever``): its lifecycle (signals, startup, the main loop, shutdown),
the directory watcher, and the starting and stopping of each request's pass. What is
due when is decided by ``service.daemon.schedule`` (pure); the request directory itself is
``service.daemon.requestdir``; what every run stands on (directories, run lock, store,
heartbeat) is ``service.daemon.runtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from hstsync.archive import find_token, parse_manifest
from hstsync.config import Config
from hstsync.errors import ConfigError, DiskFullError, ManifestError, StoreError
from hstsync.model import Request, RequestState
from hstsync.service.daemon.requestdir import (
    Intake,
    Version,
    Watcher,
    clash_reason,
    clear_note,
    put_aside,
    scan,
    shown_name,
    wake,
)
from hstsync.service.daemon.runlock import daemon_status, run_lock
from hstsync.service.daemon.runtime import (
    STOP_SIGNALS,
    DatabaseFile,
    WriteGuard,
    first_store_error,
    forget_removed,
    keeping_alive,
    missing_requests,
    opened_store,
    raise_open_files_limit,
    recover,
)
from hstsync.service.daemon.schedule import Start, next_wake, start_due
from hstsync.service.daemon.sdnotify import sd_notify
from hstsync.service.daemon.upkeep import clear_attic, rolling_verify
from hstsync.service.daemon.web import serving_status
from hstsync.service.daemon.workers import use_worker_threads
from hstsync.service.sync import Mirror, Notices, PassProgress, exit_code, sync_requests
from hstsync.store import Store
from hstsync.text import printable

__all__ = ["Daemon", "daemon_status", "run_forever", "run_lock", "run_once", "wake"]

log = logging.getLogger(__name__)

#: a manifest written in place is taken once unchanged for this long (writers that
#: skip the .tmp rename); one renamed into place is taken at once
#: (``schedule.finished``)
SETTLE_SECONDS = 0.5
#: the listing is re-read this often even without file events
RESCAN_SECONDS = 30.0
#: ... and this often while the request directory is missing
MISSING_RESCAN_SECONDS = 3.0


async def run_once(config: Config, progress: PassProgress | None = None) -> int:
    """Take every manifest present, mirror it, and return the exit code.

    SIGTERM, SIGINT and SIGHUP cancel the pass: partial files stay for resume and
    rows go back to pending, so the next pass (or the daemon) carries on. A second
    signal cancels again, cutting short whatever the cleanup still waits for; the
    store is closed either way. A worker thread stuck in astroquery is not waited
    for (:mod:`hstsync.service.daemon.workers`).
    """
    loop = asyncio.get_running_loop()
    use_worker_threads(loop)
    raise_open_files_limit()
    this = asyncio.current_task()
    assert this is not None
    signalled: list[int] = []

    def interrupt(signum: int) -> None:
        signalled.append(signum)
        if len(signalled) > 1:
            log.warning("second signal: stopping without waiting for in-flight work")
        this.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, interrupt, signum)
    try:
        return await _one_pass(config, progress)
    except DiskFullError as exc:
        log.error("%s", exc)
        return 1
    except asyncio.CancelledError:
        if not signalled:
            raise
        while this.uncancel():
            pass
        log.warning("interrupted: partial files are kept and resume on the next run")
        return 1
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _one_pass(config: Config, progress: PassProgress | None) -> int:
    token = find_token(config.mast.token_file, server=config.mast.server)
    failure: StoreError | None = None
    with opened_store(config) as (store, lock):
        database = DatabaseFile.of(config.paths.database)
        try:
            found = scan(config.paths.requests)
        except FileNotFoundError:
            raise ConfigError(missing_requests(config)) from None
        try:
            recover(store)
            for name, moved, reason in found.invalid:
                store.record_invalid(name, printable(str(moved)), reason)
            forget_removed(store, {request.name for request, _ in found.requests})
            for request, path in found.requests:
                store.upsert_request(request, printable(str(path)))
            async with (
                Mirror(
                    config,
                    store,
                    token=token.value if token else None,
                    token_source=lambda: token,  # where it came from, for advice
                    progress=progress,
                ) as mirror,
                keeping_alive(lock),
            ):
                for name, moved, reason in found.invalid:
                    mirror.notices.post("manifest_set_aside", name, reason, manifest=str(moved))
                states = await sync_requests(mirror, [request for request, _ in found.requests])
                # the nightly timer's run keeps the mirror as the daemon does
                for request, _ in found.requests:
                    if await rolling_verify(mirror, request) is not None:
                        row = store.get_request(request.name)
                        if row is not None:
                            states[request.name] = row.state
                await asyncio.to_thread(clear_attic, config)
                await mirror.notices.drain()
            # set aside now or before, and not removed from failed/ since: as status says
            invalid = any(row.state is RequestState.INVALID for row in store.list_requests())
        except* StoreError as group:
            failure = first_store_error(group)
        if (gone := database.changed()) is not None:
            log.error("%s", gone)
            return 1
    if failure is not None:
        # The database could not be written (disk full, I/O error): every transaction
        # either happened or not, and the next run takes up where this one stopped.
        log.error("%s; stopping (the next run resumes)", failure)
        return 1
    if invalid:
        return 1
    return exit_code(states.values())


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
        self._manifests: dict[str, Request] = {}  # request name -> its current request
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._signals = 0
        #: set by a second signal: stop without waiting for in-flight work
        self.force_exit = False
        self._main: asyncio.Task[int] | None = None
        self._writes = WriteGuard(on_failure=self._wake.set)
        #: the events the hook is told (the mirror's, once it is there)
        self._notices: Notices | None = None
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
        self._notices = mirror.notices
        async with serving_status(self.config), asyncio.TaskGroup() as group:
            watcher = group.create_task(self._watcher.run())
            flusher = group.create_task(mirror.flush_progress_forever())
            teller = group.create_task(mirror.notices.tell_forever())
            group.create_task(mirror.warm_up())
            await self._watcher.started()
            with self._writes():
                recover(store)
            with self._writes():
                await self._rescan(store, first=True)
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
                        self._start_due(store, mirror, group)
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
                        await self._rescan(store)
            # Shutdown travels as cancellation: downloads close their .part files,
            # rows go back to pending, and the group waits for every task.
            for task in self._tasks.values():
                task.cancel()
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
        idle = (store.get_request(name) for name in self._manifests if name not in self._tasks)
        rows = [row for row in idle if row is not None]
        return next_wake(rows, _now(), self.config.schedule.resync_every, longest=wait)

    # -- the request directory -----------------------------------------------------------

    async def _rescan(self, store: Store, *, first: bool = False) -> None:
        survey = self._intake.survey(first=first, known=len(self._manifests))
        if survey is None:
            return
        if survey.back:
            self._watcher.restart()
        for clash in survey.clashes:
            await self._refuse(store, clash)
        for path, version in survey.due:
            self._intake.took(path.name, version)
            try:
                await self._take(store, path, shown_name(path))
            except StoreError:
                self._intake.untake(path.name)  # taken again once the database recovers
                raise
        for name in list(self._manifests):
            if name not in survey.present:
                await self._cancel(name)
                store.remove_request(name)  # first: a failed write is tried again
                del self._manifests[name]
                log.info("request %s: manifest removed, request stopped", name)
        # manifests removed while the daemon was down, and set-aside ones removed from
        # failed/ (no file event there: noticed at a rescan)
        forget_removed(store, survey.present)

    async def _refuse(self, store: Store, clash: list[tuple[Path, Version]]) -> None:
        """Manifests naming one request: its pass stops, and all of them are set aside."""
        name = shown_name(clash[0][0])
        await self._cancel(name)
        self._manifests.pop(name, None)
        reason = clash_reason(path for path, _ in clash)
        moved, why = clash[0][0], reason
        for path, version in clash:
            self._intake.took(path.name, version)  # tried once, not at every look
            moved, why = put_aside(path, reason)
            if moved != path:
                self._intake.forget(path.name)
        store.record_invalid(name, printable(str(moved)), why)

    async def _take(self, store: Store, path: Path, name: str) -> None:
        try:
            request = parse_manifest(path)
        except ManifestError as exc:
            await self._cancel(name)
            self._manifests.pop(name, None)
            moved, reason = put_aside(path, str(exc))
            if moved != path:
                self._intake.forget(path.name)
            store.record_invalid(name, printable(str(moved)), reason)
            if self._notices is not None:
                self._notices.post("manifest_set_aside", name, reason, manifest=str(moved))
            return
        clear_note(path)
        before = store.get_request(name)
        row = store.upsert_request(request, printable(str(path)))
        if before is not None and before.digest != row.digest:
            log.info("request %s: manifest changed, re-planning", name)
            await self._cancel(name)
            store.set_request_state(name, RequestState.QUEUED)
        elif before is None:
            log.info("request %s: queued (proposal %s)", name, ", ".join(request.proposal_ids))
        self._manifests[name] = request

    # -- scheduling ------------------------------------------------------------------------

    def _start_due(self, store: Store, mirror: Mirror, group: asyncio.TaskGroup) -> None:
        now = _now()
        for name, request in self._manifests.items():
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

    async def _cancel(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _now() -> datetime:
    """The scheduler's clock (tests move it)."""
    return datetime.now(UTC)


def run_forever(config: Config) -> int:
    """``hstsync run``: serve until SIGTERM or SIGINT."""
    return asyncio.run(Daemon(config).run())
