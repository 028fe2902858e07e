"""Giving a complete part its final name, durably: one file, or small files in batches.

The rename is the only place a file gets its final name, and it comes after the size
check, the content check and the fsync: a crash leaves a part to resume, never a short
file that a later pass would take for a finished one. A symbolic link planted at the
final name (or on the way to it) is refused, not replaced. A file already under the
final name that the new one replaces can be kept (``old_to``): it is hard-linked there
first (renamed, on a file system without hard links), so the final name is never
missing and the old bytes are never lost.

:func:`commit_file` does it for one part on disk (blocking). Small files held in memory
(:class:`Landing`) go to :class:`Lander`: while one batch lands in a worker thread, the
files finished meanwhile queue for the next, so several share one thread hop and the
files of one directory one directory fsync; a file is reported done only once those
fsyncs are done.

A directory made for a file is a name in its parent, durable only once the parent is
fsynced: the directories this process made (:func:`remember_made`) are fsynced in their
parents by the first file landed below them, whichever transfer made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hstsync.errors import TransferError
from hstsync.transfer.control import remove_control
from hstsync.transfer.digest import Digest
from hstsync.transfer.disk import (
    DIRECTORY,
    check_dirs,
    disk_failure,
    fsync_dir,
    make_dirs,
    pwrite_all,
    refuse_link,
)
from hstsync.transfer.lock import same_file
from hstsync.transfer.verify import verify_file


@dataclass(frozen=True, slots=True)
class Landing:
    """A small file to land: its whole ``body``, its part open and locked as ``fd`` (a
    descriptor of the landing's own, closed once it has landed or failed)."""

    root: Path | None
    part: Path
    dest: Path
    fd: int
    body: bytes
    #: where a file already under the final name goes (None: it is replaced)
    old_to: Path | None = None
    #: a control file may be beside the part: removed before the part's bytes change
    sidecars: bool = False
    #: a file nothing can check is not accepted (``verify.Unverifiable``)
    require: bool = False


def finish_part(
    root: Path | None,
    part: Path,
    dest: Path,
    fd: int,
    size: int,
    digest: Digest,
    old_to: Path | None,
    parents: Iterable[str],
    require: bool = False,
) -> Path | None:
    """A complete part on disk (open as ``fd``) checked, its hash caught up, committed under
    its final name and its control file removed (see :func:`commit_file`). Blocking."""
    try:
        check_dirs(root, part.parent)
        refuse_link(part)
        if not same_file(fd, part):
            raise TransferError(f"{part} was moved away during the transfer")
        held = os.fstat(fd).st_size
        if held != size:  # callers checked already; this line is the promise itself
            raise TransferError(f"the partial file holds {held} of {size} bytes")
        verify_file(part, dest.name, require=require)
        digest.catch_up(fd, size)
    except OSError as exc:
        raise disk_failure(exc, "reading", part) from None
    replaced = commit_file(root, part, dest, fd, old_to, parents)
    with contextlib.suppress(OSError):
        remove_control(part, legacy=True)
    return replaced


def commit_file(
    root: Path | None, part: Path, dest: Path, fd: int, old_to: Path | None, parents: Iterable[str]
) -> Path | None:
    """Give the complete, checked part (open as ``fd``) its final name, durably, and the
    directories made for it (``parents`` fsynced); where a file it replaced was kept
    (``old_to``, or a free name beside it; None: none was). Blocking."""
    try:
        check_dirs(root, dest.parent)
        refuse_link(dest)
        os.fsync(fd)
        kept = None if old_to is None else _keep_old(root, dest.name, old_to, None, dest.parent)
        os.replace(part, dest)
    except OSError as exc:
        raise disk_failure(exc, "finishing", dest) from None
    with contextlib.suppress(OSError):  # the rename durable; not every file system allows it
        fsync_dir(dest.parent)
    _fsync_all(parents)
    return kept


def _keep_old(
    root: Path | None, name: str, old_to: Path, dir_fd: int | None, directory: Path
) -> Path | None:
    """The file now called ``name`` (in ``dir_fd`` or ``directory``) also at ``old_to``,
    durably, before a new file takes its name: where it was kept (None: there is none)."""
    source = name if dir_fd is not None else os.fspath(directory / name)
    try:
        mode = os.lstat(source, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        return None
    return _keep(root, source, old_to, dir_fd, link=True)


def _keep(root: Path | None, source: str, to: Path, dir_fd: int | None, *, link: bool) -> Path:
    """``source`` also (``link``) or only at ``to``, or at ``to.1``, ``to.2``… when that
    name is taken; durably. Never through a symbolic link below ``root``."""
    make_dirs(root, to.parent)
    for n in range(1000):
        target = to if not n else to.with_name(f"{to.name}.{n}")
        refuse_link(target)
        try:
            if link:
                try:
                    os.link(source, target, src_dir_fd=dir_fd, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                        raise
                    if os.path.lexists(target):
                        raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
                    os.rename(source, target, src_dir_fd=dir_fd)
            else:
                if os.path.lexists(target):
                    continue
                os.rename(source, target, src_dir_fd=dir_fd)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):
            fsync_dir(target.parent)
        return target
    raise OSError(errno.EEXIST, "no free name", str(to))


def retire(root: Path | None, path: Path, to: Path) -> Path:
    """Move the file at ``path`` to ``to`` (or a free name beside it), durably, never
    through a link below ``root``: where it now is. Blocking; raises ``OSError``."""
    check_dirs(root, path.parent)
    refuse_link(path)
    kept = _keep(root, os.fspath(path), to, None, link=False)
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
    return kept


def land_all(files: list[Landing], parents: Iterable[str] = ()) -> list[Exception | Path | None]:
    """Land small files from one worker thread: each part written, checked, fsynced and
    renamed; then each directory fsynced once for all of them, and the ``parents`` of
    directories made for them. A file's result (where a file it replaced was kept; an
    exception: why it is not in place) exists only once those fsyncs are done.

    Each directory is checked for links once and then held open: parts are renamed in
    it and it is fsynced through that descriptor, so it cannot be swapped for a link
    meanwhile.
    """
    results: list[Exception | Path | None] = [None] * len(files)
    opened: dict[tuple[Path | None, Path], int] = {}
    renamed: set[int] = set()
    try:
        for i, landing in enumerate(files):
            try:
                key = (landing.root, landing.dest.parent)
                dir_fd = opened.get(key)
                if dir_fd is None:
                    try:
                        check_dirs(landing.root, landing.dest.parent)
                        dir_fd = opened[key] = os.open(landing.dest.parent, DIRECTORY)
                    except OSError as exc:
                        raise disk_failure(exc, "writing", landing.part) from None
                results[i] = _land_at(landing, dir_fd)
                renamed.add(dir_fd)
            except Exception as exc:  # that file's; the others go on
                results[i] = exc
        for dir_fd in renamed:
            with contextlib.suppress(OSError):  # the renames durable
                os.fsync(dir_fd)
        _fsync_all(parents)
    finally:
        for dir_fd in opened.values():
            os.close(dir_fd)
        for landing in files:  # each landing's own descriptor (see Landing.fd)
            os.close(landing.fd)
    return results


def _land_at(landing: Landing, dir_fd: int) -> Path | None:
    part, dest, fd, body = landing.part, landing.dest, landing.fd, landing.body
    try:
        if landing.sidecars:  # the part's bytes change: nothing may name the old ones
            remove_control(part, legacy=True)
        pwrite_all(fd, body, 0)
        os.ftruncate(fd, len(body))
        verify_file(part, dest.name, body, require=landing.require)
        os.fsync(fd)
        held = os.fstat(fd).st_size
    except OSError as exc:
        raise disk_failure(exc, "writing", part) from None
    if held != len(body):  # the promise itself, as in commit_file
        raise TransferError(f"the partial file holds {held} of {len(body)} bytes")
    try:
        try:
            refuse_link(dest.name, dir_fd=dir_fd)
        except OSError as exc:  # named in full: the name alone says nothing in a log
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        old_to = landing.old_to
        kept = None
        if old_to is not None:
            kept = _keep_old(landing.root, dest.name, old_to, dir_fd, dest.parent)
        os.replace(part.name, dest.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise disk_failure(exc, "finishing", dest) from None
    return kept


def parents_of(made: Iterable[str]) -> list[str]:
    """The directories whose fsync makes the names of the directories ``made`` durable."""
    return sorted({os.path.dirname(d) for d in made})


def _fsync_all(directories: Iterable[str]) -> None:
    for directory in directories:
        with contextlib.suppress(OSError):  # as for the renames: not every file system
            fsync_dir(directory)


class Lander:
    """Small files handed to a worker thread in batches (see the module's docstring), and
    the directories this process made whose names are not durable yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: list[tuple[Landing, asyncio.Future[Path | None]]] = []
        self._busy = False
        self.made: set[str] = set()

    def unsynced(self, directory: Path) -> set[str]:
        """``directory`` and those above it that were made and are not durable yet."""
        found: set[str] = set()
        current = os.fspath(directory)
        while current in self.made and current not in found:
            found.add(current)
            current = os.path.dirname(current)
        return found

    def synced(self, made: Iterable[str]) -> None:
        self.made.difference_update(made)

    async def land(self, landing: Landing) -> Path | None:
        """Land one small file with the others of its batch: where a file it replaced
        was kept (None: none was)."""
        future: asyncio.Future[Path | None] = self._loop.create_future()
        self._queue.append((landing, future))
        if not self._busy:
            self._next()
        return await future

    def _next(self) -> None:
        batch, self._queue = self._queue, []
        self._busy = bool(batch)
        if not batch:
            return
        made: set[str] = set()
        for landing, _ in batch:
            made |= self.unsynced(landing.dest.parent)
        try:
            running = self._loop.run_in_executor(
                None, land_all, [f for f, _ in batch], parents_of(made)
            )
        except RuntimeError as exc:  # the executor is shut down: the loop is closing
            for landing, _ in batch:
                os.close(landing.fd)
            self._landed(batch, [exc] * len(batch))
            return

        def landed(done: asyncio.Future[list[Exception | Path | None]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.synced(made)
            self._landed(batch, _results(done, len(batch)))

        running.add_done_callback(landed)

    def _landed(
        self,
        batch: list[tuple[Landing, asyncio.Future[Path | None]]],
        results: list[Exception | Path | None],
    ) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its transfer was cancelled: the file landed all the same
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._next()


def _results(
    done: asyncio.Future[list[Exception | Path | None]], n: int
) -> list[Exception | Path | None]:
    if done.cancelled():
        return [TransferError("landing the file was cancelled")] * n
    failure = done.exception()
    if failure is not None:
        return [failure if isinstance(failure, Exception) else TransferError(str(failure))] * n
    return done.result()


_LANDERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Lander] = weakref.WeakKeyDictionary()


def lander() -> Lander:
    """This event loop's lander."""
    loop = asyncio.get_running_loop()
    found = _LANDERS.get(loop)
    if found is None:
        found = _LANDERS[loop] = Lander(loop)
    return found


def remember_made(made: Iterable[str]) -> None:
    """Directories :func:`~hstsync.transfer.disk.make_dirs` made on this loop: the first
    file landed below each makes its name in its parent durable too."""
    lander().made.update(made)
