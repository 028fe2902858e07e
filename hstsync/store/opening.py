"""Opening the store's SQLite file: read-write (created 0600, in WAL) or read-only
(``mode=ro``, for ``hstsync status``), the per-connection pragmas, and the messages a
person reads when opening fails (a full disk, a directory the user may not write, a file
that is not a database).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from hstsync.errors import DiskFullError, StoreError

BUSY_TIMEOUT_SECONDS = 10.0


def connect_readwrite(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot write the database {path}: permission denied")
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except OSError as exc:
        if disk_full(path):
            raise DiskFullError(full_message(path)) from exc
        raise StoreError(f"cannot create database {path}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise open_failure(path, exc) from exc


#: below this many free bytes the database's filesystem counts as full
_FULL_BELOW = 64 * 1024


def disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < _FULL_BELOW
    except OSError:
        return False


def full_message(path: Path) -> str:
    return f"cannot open the database {path}: the disk is full (no space left in {path.parent})"


def open_failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """The error for a database that cannot be opened for writing, explained.

    SQLite says "disk I/O error" when it cannot make its -wal or -shm file on a full
    disk; that is said plainly (and is not a configuration error).
    """
    if disk_full(path):
        return DiskFullError(full_message(path))
    return StoreError(write_failure(path, exc))


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, if there is none.

    An existing file keeps its mode: an operator may have opened it to a group on
    purpose (``hstsync status`` as another user). SQLite gives the -wal and -shm files
    the mode of the database file, so they are private too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask can only take bits away; make it exact
    finally:
        os.close(fd)


def connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(f"no database at {path} yet — run `hstsync run` first")
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the database {path}: permission denied")
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # Opening is lazy: read the schema now so a failure surfaces here, explained.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(_readonly_failure(path, exc)) from exc
    return conn


def configure(conn: sqlite3.Connection, *, readonly: bool) -> None:
    """Set the per-connection pragmas of a connection the store is about to use."""
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        # NORMAL is durable across application crashes in WAL mode; only a power
        # loss can drop the last commits, which a re-sync repairs.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")


def _readonly_failure(path: Path, exc: sqlite3.Error) -> str:
    message = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
        return f"{path} is not an hstsync database: {message}"
    shm = path.with_name(path.name + "-shm")
    if not shm.exists() and not os.access(path.parent, os.W_OK):
        # A WAL database is read through its -shm index; with the daemon stopped that
        # file is gone, and a reader must be able to create it next to the database.
        return (
            f"cannot open {path} read-only: SQLite needs to create {shm.name} in "
            f"{path.parent}, which this user may not write; run this as the daemon's "
            "user, or while the daemon is running"
        )
    if shm.exists() and not os.access(shm, os.R_OK):
        return f"cannot open {path} read-only: {shm} is not readable by this user"
    return f"cannot open {path} read-only: {message}"


def write_failure(path: Path, exc: sqlite3.Error) -> str:
    message = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
        return f"{path} is not an hstsync database: {message}"
    if not os.access(path.parent, os.W_OK):
        return (
            f"cannot write the database {path}: SQLite keeps its -wal and -shm files in "
            f"{path.parent}, which this user may not write"
        )
    return f"cannot open the database {path}: {message}"
