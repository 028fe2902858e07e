"""The service: take manifests from the request directory and keep them mirrored.

``run_once`` is one pass (``hstsync run --once``); ``run_forever`` is the daemon.
Manifests are standing requests: they stay in the request directory and are
re-synced; an invalid one is moved to ``failed/`` beside a ``NAME.error.txt``
that says why in plain language, and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchfiles import Change, awatch

from hstsync.archive.auth import find_token
from hstsync.archive.manifest import is_manifest_name, parse_manifest, request_name
from hstsync.config import Config
from hstsync.errors import ConfigError, DiskFullError, ManifestError, StoreError
from hstsync.files import atomic_write
from hstsync.model import Request, RequestState
from hstsync.service.mirror import Mirror, Progress, sync_requests
from hstsync.service.runlock import HEARTBEAT_SECONDS, RunLock, daemon_status, run_lock
from hstsync.service.sdnotify import sd_notify, watchdog_interval
from hstsync.service.settlement import exit_code
from hstsync.service.web import serving_status
from hstsync.service.workers import use_worker_threads
from hstsync.store.db import RequestRow, Store

__all__ = ["Daemon", "daemon_status", "run_forever", "run_lock", "run_once", "wake"]

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
#: a manifest written in place is taken once unchanged for this long (writers that
#: skip the .tmp rename); one renamed into place is taken at once (see ``finished``)
SETTLE_SECONDS = 0.5
#: the listing is re-read this often even without file events
RESCAN_SECONDS = 30.0
#: ... and this often while the request directory is missing
MISSING_RESCAN_SECONDS = 3.0
#: after the database could not be written (disk full): first pause, and the longest
STORE_BACKOFF_SECONDS = 2.0
STORE_BACKOFF_MAX_SECONDS = 300.0
#: the signals that stop a run (SIGHUP too: nothing to reload, and its default
#: action would kill the process without any cleanup)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True, slots=True)
class Scan:
    """What the request directory holds right now."""

    requests: list[tuple[Request, Path]]
    invalid: list[tuple[str, Path, str]]  # name, where it was moved, why


def prepare_directories(config: Config) -> None:
    """Make the directories a run needs, refusing to invent a missing request directory.

    The request directory is created only on a first run (no database yet) and only
    inside an existing parent. Otherwise a missing one is most likely a share that is
    not mounted: an empty directory made in its place would make the run forget every
    request.
    """
    requests = config.paths.requests
    if not requests.is_dir():
        first_run = not config.paths.database.exists() and requests.parent.is_dir()
        if requests.exists() or not first_run:
            raise ConfigError(missing_requests(config))
        _make(requests, "requests")
    _make(config.paths.mirror, "mirror")
    _make(config.paths.database.parent, "database")


def _make(path: Path, key: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"[paths] {key}: cannot create {path}: {exc.strerror or exc}") from None


def missing_requests(config: Config) -> str:
    where = f" in {config.source}" if config.source else ""
    what = "is not a directory" if config.paths.requests.exists() else "does not exist"
    return (
        f"the request directory {config.paths.requests} {what} (a share not mounted?); "
        f"create it, or fix `requests` under [paths]{where}"
    )


@contextlib.contextmanager
def opened_store(config: Config) -> Iterator[tuple[Store, RunLock]]:
    """What every run starts with: its directories, the run lock, and the store.

    Opening errors (a read-only directory, not a database) are raised here; the
    first write, :func:`recover`, is the caller's, with the writes that follow.
    """
    prepare_directories(config)
    with run_lock(config) as lock, Store(config.paths.database) as store:
        yield store, lock


def recover(store: Store) -> None:
    """Requeue the work of an interrupted run (rows left ``resolving``/``downloading``)."""
    products, requests = store.recover_interrupted()
    if products or requests:
        log.info(
            "recovered %d transfers and %d requests from an interrupted run",
            products,
            requests,
        )


def forget_removed(store: Store, present: set[str]) -> None:
    """Stop the requests whose manifests are gone (their files stay in the mirror)."""
    for row in store.list_requests():
        if row.name not in present and row.state is not RequestState.INVALID:
            log.info("request %s: manifest removed, request stopped", row.name)
            store.remove_request(row.name)


def wake(directory: Path) -> None:
    """Nudge a running daemon to look at the database now (after ``hstsync retry``).

    A dot file is never a manifest, but creating it is a file event, and file events
    wake the daemon's scheduler; without one it would look at its next rescan.
    """
    nudge = directory / f".hstsync-wake-{os.getpid()}"
    with contextlib.suppress(OSError):
        nudge.touch()
        nudge.unlink()


def renamed_in(changes: Iterable[tuple[Change, str]]) -> set[str]:
    """The manifests a batch of file events shows renamed into place from a temporary
    name: ``NAME.tmp`` (the convention) or rsync's ``.NAME.XXXXXX``.

    A rename is one event pair, the temporary name deleted and the manifest's added,
    so they arrive in one batch; a file written in place is only ever added or
    modified. Names only: the caller checks the file is the one that was renamed.
    """
    gone = {os.path.basename(path) for change, path in changes if change == Change.deleted}
    added = {os.path.basename(path) for change, path in changes if change == Change.added}
    return {
        name
        for name in added
        if is_manifest_name(name)
        and (f"{name}.tmp" in gone or any(g.startswith(f".{name}.") for g in gone))
    }


def finished(info: os.stat_result) -> bool:
    """Whether a file's writer is known to be done with it.

    Its metadata changed after its contents last did (ctime later than mtime): it was
    renamed into place some time after being written (``mv`` of an older file), or its
    times were set after writing (``cp -p``, ``rsync -t``, ``touch``).
    Every write sets both times to the same instant, so a file still being written in
    place never passes; a rename within the same clock tick as the last write (file
    times are coarse: ~4 ms) does not either, which is why the daemon also reads
    renames off its file events (:func:`renamed_in`).
    """
    return info.st_ctime_ns > info.st_mtime_ns


def settled(info: os.stat_result, now: float, *, settle: float, steady: bool) -> bool:
    """Whether a manifest may be read now without catching its writer half-way:
    finished, or last written ``settle`` seconds ago and ``steady`` (the same size and
    mtime at the previous look)."""
    return finished(info) or (now - info.st_mtime >= settle and steady)


def _failed_dir(directory: Path, *, create: bool) -> int:
    """An open descriptor of ``directory/failed``, refused when it is not a plain
    directory: a symlink planted there would carry manifests and notes elsewhere."""
    failed = directory / FAILED_DIR
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(failed)
    try:
        return os.open(failed, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(exc.errno, f"{failed} is not a directory (a symlink?)") from None
        raise


def set_aside(path: Path, reason: str) -> Path:
    """Move an invalid manifest to ``failed/`` with ``NAME.error.txt`` beside it.

    Both names are taken inside the ``failed`` directory opened once without
    following links: the move replaces a symlink planted at ``failed/NAME.toml``
    (never its target), and the note is written by :func:`atomic_write`, which never
    writes through one. Raises :class:`OSError` when ``failed`` is not a plain
    directory; the manifest then stays where it is.
    """
    fd = _failed_dir(path.parent, create=True)
    try:
        os.replace(path, path.name, dst_dir_fd=fd)
        note = Path(f"{request_name(path)}.error.txt")
        atomic_write(
            note,
            f"{path.name} was not taken: {reason}\n"
            f"Fix it and move it back to {path.parent}/ to try again.\n",
            dir_fd=fd,
        )
    finally:
        os.close(fd)
    return path.parent / FAILED_DIR / path.name


def put_aside(path: Path, reason: str) -> tuple[Path, str]:
    """:func:`set_aside`, or say why the manifest had to stay: (where it is, why)."""
    try:
        moved = set_aside(path, reason)
    except OSError as exc:
        why = exc.strerror or str(exc)
        log.error("manifest %s is invalid and stays in place: %s (%s)", path.name, why, reason)
        return path, f"{reason} (not moved aside: {why})"
    log.warning("manifest %s set aside: %s", path.name, reason)
    return moved, reason


def clear_note(path: Path) -> None:
    """Remove a stale ``failed/NAME.error.txt`` once ``NAME``'s manifest is taken."""
    try:
        fd = _failed_dir(path.parent, create=False)
    except OSError:
        return
    try:
        os.unlink(f"{request_name(path)}.error.txt", dir_fd=fd)
        log.info("request %s: manifest taken; removed its old error note", request_name(path))
    except OSError:
        pass
    finally:
        os.close(fd)


def scan(directory: Path) -> Scan:
    """Parse every manifest present; set aside the ones that cannot be taken."""
    requests: list[tuple[Request, Path]] = []
    invalid: list[tuple[str, Path, str]] = []
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for entry in entries:
        if not entry.is_file() or not is_manifest_name(entry.name):
            continue
        path = Path(entry.path)
        try:
            requests.append((parse_manifest(path), path))
        except ManifestError as exc:
            moved, reason = put_aside(path, str(exc))
            invalid.append((request_name(path), moved, reason))
            continue
        clear_note(path)
    return Scan(requests, invalid)


async def run_once(config: Config, progress: Progress | None = None) -> int:
    """Take every manifest present, mirror it, and return SPEC's exit code.

    SIGTERM, SIGINT and SIGHUP cancel the pass: partial files stay for resume and
    rows go back to pending, so the next pass (or the daemon) carries on. A second
    signal cancels again, cutting short whatever the cleanup still waits for; the
    store is closed either way. A worker thread stuck in astroquery is not waited
    for (:mod:`hstsync.service.workers`).
    """
    loop = asyncio.get_running_loop()
    use_worker_threads(loop)
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


async def _one_pass(config: Config, progress: Progress | None) -> int:
    token = find_token(config.mast.token_file)
    failure: StoreError | None = None
    with opened_store(config) as (store, lock):
        try:
            found = scan(config.paths.requests)
        except FileNotFoundError:
            raise ConfigError(missing_requests(config)) from None
        try:
            recover(store)
            for name, moved, reason in found.invalid:
                store.record_invalid(name, str(moved), reason)
            forget_removed(store, {request.name for request, _ in found.requests})
            for request, path in found.requests:
                store.upsert_request(request, str(path))
            async with (
                Mirror(
                    config, store, token=token.value if token else None, progress=progress
                ) as mirror,
                _keeping_alive(lock),
            ):
                states = await sync_requests(mirror, [request for request, _ in found.requests])
        except* StoreError as group:
            failure = _first_store_error(group)
    if failure is not None:
        # The database could not be written (disk full, I/O error): every transaction
        # either happened or not, and the next run takes up where this one stopped.
        log.error("%s; stopping (the next run resumes)", failure)
        return 1
    if found.invalid:
        return 1
    return exit_code(states.values())


def _first_store_error(group: BaseExceptionGroup[StoreError]) -> StoreError:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, StoreError)
    return error


@contextlib.asynccontextmanager
async def _keeping_alive(lock: RunLock) -> AsyncIterator[None]:
    """While the block runs: the run lock's heartbeat and systemd's watchdog, both
    from the event loop, so that a loop that stops turning stops them too."""

    async def beat() -> None:
        watchdog = watchdog_interval()
        every = min(HEARTBEAT_SECONDS, watchdog or HEARTBEAT_SECONDS)
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(every)
            if watchdog is not None:
                sd_notify("WATCHDOG=1")
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS - every / 2:
                lock.beat()
                last_beat = time.monotonic()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Daemon:
    """The long-running service: watch, schedule, mirror, re-sync, shut down cleanly.

    The request directory's listing is the truth; watchfiles events wake the
    scheduler early and tell renames. A manifest renamed into place is taken at once
    (:func:`renamed_in`, :func:`finished`); one written in place once its mtime is
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
        self._rewatch = asyncio.Event()  # ends the current watch (stop, directory back)
        self._watching = asyncio.Event()
        #: set once the watcher reports events and the first scan is done (READY=1)
        self.ready = asyncio.Event()
        self._seen: dict[str, tuple[int, int]] = {}  # file name -> (size, mtime_ns)
        self._taken: dict[str, tuple[int, int]] = {}  # file name -> stat of the version taken
        self._renamed: dict[str, tuple[int, int]] = {}  # file name -> stat just after its rename
        self._manifests: dict[str, Request] = {}  # request name -> its current request
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._unsettled = False
        self._signals = 0
        #: set by a second signal: stop without waiting for in-flight work
        self.force_exit = False
        self._main: asyncio.Task[int] | None = None
        self._store_backoff = 0.0  # seconds; 0 while the database takes writes
        self._store_retry_at = 0.0  # monotonic time of the next attempt after a failure
        self._requests_missing = False
        self._requests_device: int | None = None
        self._rewatched_until = 0.0

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
        self._rewatch.set()
        self._wake.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        use_worker_threads(loop)
        self._main = asyncio.current_task()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.stop)
        token = find_token(self.config.mast.token_file)
        try:
            with opened_store(self.config) as (store, lock):
                # The token is looked up again at each pass: a token installed or
                # renewed while the daemon runs is used without a restart.
                async with (
                    Mirror(
                        self.config,
                        store,
                        token=token.value if token else None,
                        token_source=lambda: find_token(self.config.mast.token_file),
                    ) as mirror,
                    _keeping_alive(lock),
                ):
                    await self._serve(store, mirror)
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
        return 1 if self.force_exit else 0

    async def _serve(self, store: Store, mirror: Mirror) -> None:
        # The status endpoint (if configured) is up before the first scan and stays up
        # until every task of the group has finished.
        async with serving_status(self.config), asyncio.TaskGroup() as group:
            watcher = group.create_task(self._watch())
            flusher = group.create_task(mirror.flush_progress_forever())
            group.create_task(mirror.warm_up())
            await self._until_watching()
            with self._store_guard():
                recover(store)
            with self._store_guard():
                await self._rescan(store, first=True)
            sd_notify("READY=1", f"STATUS=watching {self.config.paths.requests}")
            self.ready.set()
            log.info(
                "watching %s, mirroring into %s",
                self.config.paths.requests,
                self.config.paths.mirror,
            )
            while not self._stop.is_set():
                if time.monotonic() >= self._store_retry_at:
                    with self._store_guard():
                        self._start_due(store, mirror, group)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_for(store))
                self._wake.clear()
                if not self._stop.is_set() and time.monotonic() >= self._store_retry_at:
                    with self._store_guard():
                        await self._rescan(store)
            # Shutdown travels as cancellation: downloads close their .part files,
            # rows go back to pending, and the group waits for every task.
            for task in self._tasks.values():
                task.cancel()
            watcher.cancel()
            flusher.cancel()

    @contextlib.contextmanager
    def _store_guard(self) -> Iterator[None]:
        """Turn a database that cannot be written (disk full) into a pause.

        Every write is one transaction, so a failed one leaves the rows as they were;
        the work is tried again after a pause that doubles up to
        :data:`STORE_BACKOFF_MAX_SECONDS`, and the daemon keeps running.
        """
        try:
            yield
        except StoreError as exc:
            self._store_failed(exc)
        else:
            if self._store_backoff:
                log.info("the database takes writes again")
                self._store_backoff = 0.0

    def _store_failed(self, exc: StoreError) -> None:
        backoff = self._store_backoff * 2 or STORE_BACKOFF_SECONDS
        self._store_backoff = min(backoff, STORE_BACKOFF_MAX_SECONDS)
        self._store_retry_at = time.monotonic() + self._store_backoff
        log.error("%s; trying again in %.0f s", exc, self._store_backoff)
        self._wake.set()

    def _sleep_for(self, store: Store) -> float:
        if self._store_retry_at > time.monotonic():
            return self._store_retry_at - time.monotonic()
        if self._unsettled:
            return min(self.settle, 0.25)
        wait = self.rescan_every
        if self._requests_missing:  # no file event tells when a share comes back
            wait = min(wait, MISSING_RESCAN_SECONDS)
        if time.monotonic() < self._rewatched_until:  # the watcher is restarting
            wait = min(wait, 0.25)
        now = _now()
        for name in self._manifests:
            if name in self._tasks:
                continue
            row = store.get_request(name)
            due = None if row is None else self._due(row)
            if due is not None:
                wait = min(wait, max((due - now).total_seconds(), 0.05))
        return wait

    def _due(self, row: RequestRow) -> datetime | None:
        """When a settled request is looked up next: a failed lookup's retry (minutes,
        backing off to an hour), else its re-sync ``resync_every`` after the last pass."""
        if row.state is RequestState.INVALID and row.next_lookup is None:
            return None  # never looked up; waits for a new manifest
        if row.next_lookup is not None:
            return _parse_time(row.next_lookup)
        if row.state in RESYNCED:
            return _last_pass(row) + timedelta(seconds=self.config.schedule.resync_every)
        return None

    async def _watch(self) -> None:
        """Turn file events into wake-ups; a crashed watcher is restarted."""
        while not self._stop.is_set():
            self._rewatch = asyncio.Event()
            try:
                async for changes in awatch(
                    self.config.paths.requests,
                    watch_filter=None,
                    debounce=100,
                    step=20,
                    recursive=False,
                    stop_event=self._rewatch,
                ):
                    self._note_renames(changes)
                    self._watching.set()
                    self._wake.set()
            except Exception as exc:
                if not self._requests_missing:  # that one is said once by _rescan
                    log.warning("directory watcher failed (%s); restarting", type(exc).__name__)
            if not self._stop.is_set():
                await asyncio.sleep(1.0)

    async def _until_watching(self, attempts: int = 40) -> None:
        """Until the watcher reports a nudge of ours, so that no file dropped after the
        first scan goes unseen until the next rescan (and renames are told from the
        first one)."""
        for _ in range(attempts):
            wake(self.config.paths.requests)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watching.wait(), 0.05)
                return
        log.warning("the directory watcher is slow to start; rescans will find new files")

    def _note_renames(self, changes: set[tuple[Change, str]]) -> None:
        """Remember each manifest renamed into place as it is now: that version is
        finished (a later write in place changes its stat and it settles as usual)."""
        for name in renamed_in(changes):
            with contextlib.suppress(OSError):
                info = os.stat(self.config.paths.requests / name)
                self._renamed[name] = (info.st_size, info.st_mtime_ns)

    # -- the request directory -----------------------------------------------------------

    async def _rescan(self, store: Store, *, first: bool = False) -> None:
        directory = self.config.paths.requests
        present: set[str] = set()
        self._unsettled = False
        now = time.time()
        try:
            device = os.stat(directory).st_dev
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self._requests_gone(exc.strerror or str(exc))
            return
        if self._requests_device is None:
            self._requests_device = device
        elif device != self._requests_device:
            if self._manifests and not any(is_manifest_name(e.name) for e in entries):
                # an empty mount point where the share was
                self._requests_gone("now an empty directory on another filesystem")
                return
            self._requests_device = device
        if self._requests_missing:
            log.info("the request directory %s is back", directory)
            self._requests_missing = False
            self._rewatch.set()  # watch the directory that is there now; until the
            self._rewatched_until = time.monotonic() + 3.0  # watcher is back, poll
        for entry in entries:
            try:
                if not entry.is_file() or not is_manifest_name(entry.name):
                    continue
                info = entry.stat()
            except (OSError, UnicodeError):
                continue
            path = Path(entry.path)
            name = request_name(path)
            present.add(name)
            stat = (info.st_size, info.st_mtime_ns)
            previous = self._seen.get(entry.name)
            self._seen[entry.name] = stat
            if self._taken.get(entry.name) == stat:
                continue
            renamed = self._renamed.pop(entry.name, None) == stat
            steady = first or previous == stat
            if not (renamed or settled(info, now, settle=self.settle, steady=steady)):
                self._unsettled = True
                continue
            self._taken[entry.name] = stat
            try:
                await self._take(store, path, name)
            except StoreError:
                del self._taken[entry.name]  # taken again once the database recovers
                raise
        for name in list(self._manifests):
            if name not in present:
                await self._cancel(name)
                store.remove_request(name)  # first: a failed write is tried again
                del self._manifests[name]
                log.info("request %s: manifest removed, request stopped", name)
        if first:
            # manifests removed while the daemon was down
            forget_removed(store, present)

    def _requests_gone(self, why: str) -> None:
        """The request directory vanished (a share unmounted?): keep every request."""
        if not self._requests_missing:
            log.error(
                "the request directory %s cannot be read (%s): keeping its %d requests "
                "and looking again at the next rescan; check [paths] requests",
                self.config.paths.requests,
                why,
                len(self._manifests),
            )
        self._requests_missing = True

    async def _take(self, store: Store, path: Path, name: str) -> None:
        try:
            request = parse_manifest(path)
        except ManifestError as exc:
            await self._cancel(name)
            self._manifests.pop(name, None)
            moved, reason = put_aside(path, str(exc))
            if moved != path:
                self._seen.pop(path.name, None)
                self._taken.pop(path.name, None)
            store.record_invalid(name, str(moved), reason)
            return
        clear_note(path)
        before = store.get_request(name)
        row = store.upsert_request(request, str(path))
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
            if row is None:
                continue
            waiting = row.state in (
                RequestState.QUEUED,
                RequestState.RESOLVING,
                RequestState.DOWNLOADING,
            )
            due = self._due(row)
            resync = not waiting and due is not None and now >= due
            if waiting or resync:
                if resync:
                    again = " after a failed lookup" if row.next_lookup is not None else ""
                    log.info("request %s: re-sync%s", name, again)
                self._tasks[name] = group.create_task(self._sync(store, mirror, request))

    async def _sync(self, store: Store, mirror: Mirror, request: Request) -> None:
        try:
            try:
                await mirror.sync(request)
            except* StoreError as group:
                self._store_failed(_first_store_error(group))
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


#: request states that are re-resolved every ``resync_every``
RESYNCED = (RequestState.DONE, RequestState.INCOMPLETE, RequestState.INVALID)


def _now() -> datetime:
    """The scheduler's clock (tests move it)."""
    return datetime.now(UTC)


def _parse_time(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _last_pass(row: RequestRow) -> datetime:
    return _parse_time(row.resolved_at or row.updated)


def run_forever(config: Config) -> int:
    """``hstsync run``: serve until SIGTERM or SIGINT."""
    return asyncio.run(Daemon(config).run())
