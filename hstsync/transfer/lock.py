"""The per-file lock: the ``.part`` itself, locked with ``flock`` while a process writes it.

Two processes pointed at one mirror (two configurations, two databases, a daemon and a
colleague's ``run --once``) never write the same file: the part is opened (created if
need be) and locked exclusively; a second process polls for the lock and, once the
first has renamed the part into place or removed it, finds that the name it locked has
moved on and opens it again — to find the file in place. A lock is released when its
descriptor closes, also when the process dies, so a kill -9 never leaves a stale one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

from hstsync.transfer.disk import open_regular

log = logging.getLogger(__name__)

#: how often a waiting process tries the lock of a part another one holds (seconds)
LOCK_POLL = 0.2


async def lock_part(path: Path, label: str = "") -> tuple[int, bool]:
    """The part at ``path`` open read-write (created if need be) and locked: its
    descriptor, and whether another process held it first (then the file may be in place
    by now). Raises ``OSError`` for a link or anything but a regular file there."""
    waited = False
    while True:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not waited:
                log.info("%s: another process is writing %s; waiting", label, path)
            waited = True
            await asyncio.sleep(LOCK_POLL)
            continue
        except BaseException:
            os.close(fd)
            raise
        # while it waited, the name may have moved on (renamed into place, removed)
        if same_file(fd, path):
            return fd, waited
        os.close(fd)


def same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the one at ``path``."""
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_ino, here.st_dev) == (mine.st_ino, mine.st_dev)
