"""What every run stands on, ``run --once`` and the daemon alike.

Its directories (a missing request directory is refused rather than invented: it is
most likely a share that is not mounted), the run lock and the store opened
(:func:`opened_store`), the recovery of an interrupted run's rows, the forgetting of
requests whose manifests went while nothing ran, and while work runs the run lock's
heartbeat and systemd's watchdog (:func:`keeping_alive`); in the daemon, a database
that refuses writes made a pause (:class:`WriteGuard`), and one deleted or replaced
under it noticed (:class:`DatabaseFile`). Directories are made with explicit modes
(never writable by other users, whatever the umask), and the soft limit on open files
is raised to the hard one (:func:`raise_open_files_limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hstsync.config import Config
from hstsync.errors import ConfigError, StoreError
from hstsync.files import DIRECTORY_MODE, make_directories
from hstsync.model import RequestState
from hstsync.service.daemon.runlock import HEARTBEAT_SECONDS, RunLock, run_lock
from hstsync.service.daemon.schedule import store_backoff
from hstsync.service.daemon.sdnotify import sd_notify, watchdog_interval
from hstsync.store import Store
from hstsync.text import printable

log = logging.getLogger(__name__)

#: the signals that stop a run (SIGHUP too: nothing to reload, and its default
#: action would kill the process without any cleanup)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


#: glibc malloc arenas a run may use (see limit_malloc_arenas)
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap the process's glibc malloc arenas (``M_ARENA_MAX``); False when not done.

    Every archive call runs in a thread of its own (``service.sync.lookup``) and small files
    land from worker threads; glibc gives threads arenas of their own, up to eight per
    core, and each keeps its high-water mark. Measured on a 40,000-file pass: RSS
    116 → 137 MB with the default, 108 → 124 MB with one arena. Nothing is done off
    glibc, or when ``MALLOC_ARENA_MAX`` is set (the user's choice stands).
    """
    import ctypes
    import os
    import platform

    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max = -8  # malloc.h
    return bool(mallopt(m_arena_max, arenas))


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
        _make(requests, "requests", REQUESTS_MODE)
    _make(config.paths.mirror, "mirror")
    _make(config.paths.database.parent, "database")


#: the request directory made on a first run: the people who drop manifests may be a
#: group (docs/deployment.md); other users may not write it
REQUESTS_MODE = 0o775


def _make(path: Path, key: str, mode: int = DIRECTORY_MODE) -> None:
    try:
        make_directories(path, mode)
    except OSError as exc:
        raise ConfigError(f"[paths] {key}: cannot create {path}: {exc.strerror or exc}") from None


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one (65,536 where the hard one is
    unlimited): status-page clients, the directory's watch and many transfers at once
    must not run the process out of descriptors the system would grant (a soft limit of
    1024 is common)."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@dataclass(frozen=True, slots=True)
class DatabaseFile:
    """Which file the store opened, to notice it deleted or replaced under a run.

    A process keeps writing to a database file unlinked under it (``rm``, a backup
    restored over it): its history would be lost at the next start and ``status``
    would say there is none while it runs. :meth:`changed` compares the file at the
    path with the one opened (device and inode).
    """

    path: Path
    identity: tuple[int, int]

    @classmethod
    def of(cls, path: Path) -> DatabaseFile:
        info = os.stat(path)
        return cls(path, (info.st_dev, info.st_ino))

    def changed(self) -> str | None:
        """Why the file at the path is not the one opened any more, or None."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return None  # cannot tell (a share hiccup): looked at again next time
        else:
            if (info.st_dev, info.st_ino) == self.identity:
                return None
        return (
            f"the database {self.path} was deleted or replaced while hstsync ran; "
            "stopping rather than writing to a file nobody will read (a restart opens "
            "the file there now, or makes a new one: manifests are taken again and files "
            "already in the mirror recorded without being fetched)"
        )


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
    """Stop the requests whose manifests are gone (their files stay in the mirror).

    An invalid manifest was set aside into ``failed/``: its request stays, ``invalid``
    with the reason, while that file is there, and is forgotten once someone removes
    it (or moves it back, fixed, which makes it present again).
    """
    for row in store.list_requests():
        if row.name in present:
            continue
        if row.state is RequestState.INVALID:
            if _still_set_aside(row.manifest):
                continue
            log.info(
                "request %s: %s is gone; the invalid request is forgotten", row.name, row.manifest
            )
        else:
            log.info("request %s: manifest removed, request stopped", row.name)
        store.remove_request(row.name)


def _still_set_aside(recorded: str) -> bool:
    """Whether the manifest set aside at ``recorded`` is still there. A name that is not
    valid text is recorded escaped (``printable``): it is found by that form among the
    names of its directory."""
    if os.path.lexists(recorded):
        return True
    directory = os.path.dirname(recorded)
    try:
        names = os.listdir(os.fsencode(directory or "."))
    except OSError:
        return False
    return any(printable(os.path.join(directory, os.fsdecode(name))) == recorded for name in names)


def first_store_error(group: BaseExceptionGroup[StoreError]) -> StoreError:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, StoreError)
    return error


@contextlib.asynccontextmanager
async def keeping_alive(lock: RunLock) -> AsyncIterator[None]:
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


class WriteGuard:
    """Turn a database that cannot be written (disk full) into a pause.

    Every write is one transaction, so a failed one leaves the rows as they were; the
    work is tried again after a pause that doubles up to
    :data:`~hstsync.service.daemon.schedule.STORE_BACKOFF_MAX_SECONDS` (``schedule.store_backoff``),
    and the daemon keeps running. ``on_failure`` wakes the scheduler to sleep the pause.
    """

    def __init__(self, on_failure: Callable[[], None]) -> None:
        self._on_failure = on_failure
        self._backoff = 0.0  # seconds; 0 while the database takes writes
        self._retry_at = 0.0  # monotonic time of the next attempt after a failure

    @property
    def pause(self) -> float:
        """Seconds until writes may be tried again (0: now)."""
        return max(self._retry_at - time.monotonic(), 0.0)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        try:
            yield
        except StoreError as exc:
            self.failed(exc)
        else:
            if self._backoff:
                log.info("the database takes writes again")
                self._backoff = 0.0

    def failed(self, exc: StoreError) -> None:
        self._backoff = store_backoff(self._backoff)
        self._retry_at = time.monotonic() + self._backoff
        log.error("%s; trying again in %.0f s", exc, self._backoff)
        self._on_failure()
