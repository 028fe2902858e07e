"""The attic: where the mirror keeps the versions it replaced, for a while.

A file the archive changed (reprocessed), a file found damaged, a file the archive no
longer lists (once ``prune``\\ d) moves to ``<mirror>/attic/<relative path>.<UTC
timestamp>`` instead of being deleted: nothing a mirror once held is lost by hstsync
itself. After each pass (the daemon's or ``run --once``) entries older than
``[schedule] attic_keep`` are removed (by the timestamp in their names, the moment
they were replaced), and ``status`` shows how much the attic holds. Nothing here logs:
``status`` reads :func:`usage` without setting logging up; whoever clears tells.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

ATTIC = "attic"
STAMP = "%Y%m%dT%H%M%SZ"
#: the stamp an attic entry ends with (and ``.N`` when two came in the same second)
_STAMPED = re.compile(r"\.(\d{8}T\d{6}Z)(?:\.\d+)?$")


def attic_path(mirror: Path, relpath: PurePosixPath | str, when: datetime | None = None) -> Path:
    """Where the version of ``relpath`` replaced at ``when`` (now) goes."""
    stamp = (when or datetime.now(UTC)).strftime(STAMP)
    target = mirror / ATTIC / relpath
    return target.with_name(f"{target.name}.{stamp}")


def replaced_at(name: str) -> datetime | None:
    """When an attic entry was replaced, from its name (None: not an attic entry)."""
    match = _STAMPED.search(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AtticUse:
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Cleared:
    """What :func:`clear_old` removed, and the entries it could not (path, why)."""

    files: int
    bytes: int
    failed: tuple[tuple[str, str], ...] = ()


def usage(mirror: Path) -> AtticUse:
    """How many files the attic holds and their bytes (nothing followed through links)."""
    files = size = 0
    for directory, _, names in os.walk(mirror / ATTIC):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(directory, name)).st_size
                files += 1
    return AtticUse(files, size)


def clear_old(mirror: Path, keep_seconds: float, now: datetime | None = None) -> Cleared:
    """Remove attic entries replaced more than ``keep_seconds`` ago, and directories left
    empty; what was removed. Entries without a stamp in their name are left alone."""
    now = now or datetime.now(UTC)
    files = size = 0
    failed: list[tuple[str, str]] = []
    top = mirror / ATTIC
    for directory, _, names in os.walk(top, topdown=False):
        for name in names:
            when = replaced_at(name)
            if when is None or (now - when).total_seconds() <= keep_seconds:
                continue
            path = os.path.join(directory, name)
            try:
                length = os.lstat(path).st_size
                os.unlink(path)
            except OSError as exc:
                failed.append((path, exc.strerror or type(exc).__name__))
                continue
            files += 1
            size += length
        if directory != os.fspath(top):
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only when empty
    return Cleared(files, size, tuple(failed))
