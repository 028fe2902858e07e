"""The run lock: one ``hstsync run`` per database, with its pid and a heartbeat.

``DATABASE.lock`` is ``flock``ed by the running process (released by the kernel when
it dies, so a ``kill -9`` leaves no stale lock), holds its pid, and has its mtime
touched every :data:`HEARTBEAT_SECONDS` from the event loop: ``hstsync status`` reads
who runs and when it was last seen alive (:func:`daemon_status`) without the
database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hstsync.config import Config
from hstsync.errors import AlreadyRunningError, StoreError

#: how often a running ``hstsync run`` touches its lock file
HEARTBEAT_SECONDS = 10.0
#: a status probe holds the lock for microseconds; a starting run waits this long
#: for it rather than refusing to start
_TAKE_ATTEMPTS = 20
_TAKE_PAUSE = 0.05


def lock_path(config: Config) -> Path:
    return lock_file(config.paths.database)


def lock_file(database: Path) -> Path:
    """The run lock of the database at ``database``: ``DATABASE.lock``."""
    return database.with_name(database.name + ".lock")


def heartbeat_of(database: Path) -> float | None:
    """The last heartbeat of a run on ``database`` (a Unix time; None: never ran)."""
    try:
        return os.stat(lock_file(database)).st_mtime
    except OSError:
        return None


@dataclass(slots=True)
class RunLock:
    """The lock of the running process; :meth:`beat` says it is alive."""

    path: Path
    fd: int

    def beat(self) -> None:
        with contextlib.suppress(OSError):  # a heartbeat never stops the work
            os.utime(self.fd)


@contextlib.contextmanager
def run_lock(config: Config) -> Iterator[RunLock]:
    """One ``hstsync run`` per database at a time.

    Two passes over one mirror would resume each other's ``.part`` files and reset
    each other's rows at start; a second run is refused instead.
    """
    path = lock_path(config)
    try:
        # 0644: a pid is no secret, and `status` run by another user reads it
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot create the run lock {path}: {exc.strerror or exc} "
            f"(the directory of [paths] database must be writable)"
        ) from None
    try:
        _take(fd, config)
        with contextlib.suppress(OSError):  # a full disk: status goes without the pid
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        lock = RunLock(path, fd)
        lock.beat()
        try:
            yield lock
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # stopped: no pid for status to show
    finally:
        os.close(fd)


def _take(fd: int, config: Config) -> None:
    for _ in range(_TAKE_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(_TAKE_PAUSE)
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    raise AlreadyRunningError(
        f"another `hstsync run` (pid {holder}) is mirroring with "
        f"{config.paths.database}; stop it first"
    )


def daemon_status(config: Config) -> tuple[bool, int | None, float | None]:
    """Whether an ``hstsync run`` holds this database, its pid, and its last heartbeat
    (a Unix time), as far as this user can tell.

    A user who may not open the lock file is told from its mtime alone: running when
    it was touched within three heartbeats.
    """
    path = lock_path(config)
    try:
        info = os.stat(path)
    except OSError:
        return False, None, None
    last = info.st_mtime
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        fresh = time.time() - last < 3 * HEARTBEAT_SECONDS
        return fresh, None, last
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return True, int(text) if text.isdigit() else None, last
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None, last
    finally:
        os.close(fd)
