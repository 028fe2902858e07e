"""The service: take manifests from the request directory and keep them mirrored.

``run_once`` is one pass (``hstsync run --once``); ``run_forever`` is the daemon.
Manifests are standing requests: they stay in the request directory and are
re-synced; an invalid one is moved to ``failed/`` beside a ``NAME.error.txt``
that says why in plain language, and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchfiles import Change, awatch

from hstsync.archive.auth import find_token
from hstsync.archive.manifest import is_manifest_name, parse_manifest, request_name
from hstsync.config import Config
from hstsync.errors import AlreadyRunningError, ManifestError
from hstsync.files import atomic_write
from hstsync.model import Request, RequestState
from hstsync.service.mirror import Mirror, Progress, exit_code, sync_requests
from hstsync.service.sdnotify import sd_notify
from hstsync.service.web import serving_status
from hstsync.store.db import RequestRow, Store

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
#: a manifest written in place is taken once unchanged for this long (writers that
#: skip the .tmp rename); one renamed into place is taken at once (see ``finished``)
SETTLE_SECONDS = 0.5
#: the listing is re-read this often even without file events
RESCAN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Scan:
    """What the request directory holds right now."""

    requests: list[tuple[Request, Path]]
    invalid: list[tuple[str, Path, str]]  # name, where it was moved, why


def prepare_directories(config: Config) -> None:
    for path in (config.paths.requests, config.paths.mirror, config.paths.database.parent):
        path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def run_lock(config: Config) -> Iterator[None]:
    """One ``hstsync run`` per database at a time.

    Two passes over one mirror would resume each other's ``.part`` files and reset
    each other's rows at start; a second run is refused instead. The lock is a
    ``flock`` on ``DATABASE.lock``, released by the kernel when the process dies,
    so a ``kill -9`` never leaves a stale lock behind.
    """
    path = config.paths.database.with_name(config.paths.database.name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunningError(
                f"another `hstsync run` (pid {holder}) is mirroring with "
                f"{config.paths.database}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_store(config: Config) -> Iterator[Store]:
    """What every run starts with: its directories, the run lock, and the store with
    the work of an interrupted run (rows left ``resolving``/``downloading``) requeued."""
    prepare_directories(config)
    with run_lock(config), Store(config.paths.database) as store:
        products, requests = store.recover_interrupted()
        if products or requests:
            log.info(
                "recovered %d transfers and %d requests from an interrupted run",
                products,
                requests,
            )
        yield store


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


def set_aside(path: Path, reason: str) -> Path:
    """Move an invalid manifest to ``failed/`` with ``NAME.error.txt`` beside it."""
    failed = path.parent / FAILED_DIR
    failed.mkdir(exist_ok=True)
    target = failed / path.name
    os.replace(path, target)
    note = failed / f"{request_name(path)}.error.txt"
    atomic_write(
        note,
        f"{path.name} was not taken: {reason}\n"
        f"Fix it and move it back to {path.parent}/ to try again.\n",
    )
    return target


def scan(directory: Path) -> Scan:
    """Parse every manifest present; set aside the ones that cannot be taken."""
    requests: list[tuple[Request, Path]] = []
    invalid: list[tuple[str, Path, str]] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return Scan([], [])
    for entry in entries:
        if not entry.is_file() or not is_manifest_name(entry.name):
            continue
        path = Path(entry.path)
        try:
            requests.append((parse_manifest(path), path))
        except ManifestError as exc:
            reason = str(exc)
            moved = set_aside(path, reason)
            log.warning("manifest %s set aside: %s", path.name, reason)
            invalid.append((request_name(path), moved, reason))
    return Scan(requests, invalid)


async def run_once(config: Config, progress: Progress | None = None) -> int:
    """Take every manifest present, mirror it, and return SPEC's exit code.

    SIGTERM and SIGINT cancel the pass: partial files stay for resume and rows
    go back to pending, so the next pass (or the daemon) carries on.
    """
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    signalled: list[int] = []

    def interrupt(signum: int) -> None:
        signalled.append(signum)
        this.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, interrupt, signum)
    try:
        return await _one_pass(config, progress)
    except asyncio.CancelledError:
        if not signalled:
            raise
        this.uncancel()
        log.warning("interrupted: partial files are kept and resume on the next run")
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _one_pass(config: Config, progress: Progress | None) -> int:
    token = find_token(config.mast.token_file)
    with opened_store(config) as store:
        found = scan(config.paths.requests)
        for name, moved, reason in found.invalid:
            store.record_invalid(name, str(moved), reason)
        forget_removed(store, {request.name for request, _ in found.requests})
        for request, path in found.requests:
            store.upsert_request(request, str(path))
        async with Mirror(
            config, store, token=token.value if token else None, progress=progress
        ) as mirror:
            states = await sync_requests(mirror, [request for request, _ in found.requests])
    if found.invalid:
        return 1
    return exit_code(states.values())


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

    # -- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work; in-flight transfers are cancelled and left resumable."""
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once (partial files stay resumable)")
            os._exit(1)
        log.info("stopping: finishing in-flight writes")
        sd_notify("STOPPING=1")
        self._stop.set()
        self._wake.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        token = find_token(self.config.mast.token_file)
        try:
            with opened_store(self.config) as store:
                # The token is looked up again at each pass: a token installed or
                # renewed while the daemon runs is used without a restart.
                async with Mirror(
                    self.config,
                    store,
                    token=token.value if token else None,
                    token_source=lambda: find_token(self.config.mast.token_file),
                ) as mirror:
                    await self._serve(store, mirror)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        log.info("stopped")
        return 0

    async def _serve(self, store: Store, mirror: Mirror) -> None:
        # The status endpoint (if configured) is up before the first scan and stays up
        # until every task of the group has finished.
        async with serving_status(self.config), asyncio.TaskGroup() as group:
            watcher = group.create_task(self._watch())
            flusher = group.create_task(mirror.flush_progress_forever())
            group.create_task(mirror.warm_up())
            await self._until_watching()
            await self._rescan(store, first=True)
            sd_notify("READY=1", f"STATUS=watching {self.config.paths.requests}")
            self.ready.set()
            log.info(
                "watching %s, mirroring into %s",
                self.config.paths.requests,
                self.config.paths.mirror,
            )
            while not self._stop.is_set():
                self._start_due(store, mirror, group)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_for(store))
                self._wake.clear()
                if not self._stop.is_set():
                    await self._rescan(store)
            # Shutdown travels as cancellation: downloads close their .part files,
            # rows go back to pending, and the group waits for every task.
            for task in self._tasks.values():
                task.cancel()
            watcher.cancel()
            flusher.cancel()

    def _sleep_for(self, store: Store) -> float:
        if self._unsettled:
            return min(self.settle, 0.25)
        wait = self.rescan_every
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
            try:
                async for changes in awatch(
                    self.config.paths.requests,
                    watch_filter=None,
                    debounce=100,
                    step=20,
                    recursive=False,
                    stop_event=self._stop,
                ):
                    self._note_renames(changes)
                    self._watching.set()
                    self._wake.set()
            except Exception as exc:
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
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s (%s)", directory, exc.strerror)
            return
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
            await self._take(store, path, name)
        for name in list(self._manifests):
            if name not in present:
                await self._cancel(name)
                del self._manifests[name]
                log.info("request %s: manifest removed, request stopped", name)
                store.remove_request(name)
        if first:
            # manifests removed while the daemon was down
            forget_removed(store, present)

    async def _take(self, store: Store, path: Path, name: str) -> None:
        try:
            request = parse_manifest(path)
        except ManifestError as exc:
            await self._cancel(name)
            self._manifests.pop(name, None)
            moved = set_aside(path, str(exc))
            self._seen.pop(path.name, None)
            self._taken.pop(path.name, None)
            log.warning("manifest %s set aside: %s", path.name, exc)
            store.record_invalid(name, str(moved), str(exc))
            return
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
            await mirror.sync(request)
        except Exception:
            # A bug must not take the daemon down with it; the request says so.
            log.exception("request %s: unexpected error", request.name)
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
