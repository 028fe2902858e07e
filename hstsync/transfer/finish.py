"""Finishing a part: verify, fsync, rename; and a part's sidecars when it is given up.

A complete ``.part`` gets its final name here and nowhere else (:func:`finish`): its
content passes :mod:`hstsync.transfer.verify` (FITS CHECKSUM/DATASUM, in a worker
thread), a segmented part is fsynced before it loses its ``.part.segments`` record,
and :func:`commit` checks the size, fsyncs and renames, refusing a symbolic link
planted at the final name or on the way to it; the validator sidecar
(``.part.meta``) goes once the file is in place. A part that fails verification is
deleted with its sidecars and the failure raised as a :class:`TransferError`, so the
retry policy fetches it again. A small file's body held in memory (``Progress.body``)
is landed by :func:`land_all` in a worker thread, with the other small files finished
meanwhile: each part created, written, verified from the bytes in hand, fsynced and
renamed, then each directory fsynced once, and only then is any of them done. Also
here: the ``lstat`` sizes a transfer decides from (:func:`file_size`,
:func:`part_size`) and the removals that only log when a disk says no
(:func:`discard`, :func:`drop_record`, :func:`drop_meta`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import weakref
from collections.abc import Iterable
from pathlib import Path

from hstsync.errors import CorruptFileError, Refused, TransferError
from hstsync.files import fsync_directory
from hstsync.transfer.outcome import OnProgress, Progress, Transfer
from hstsync.transfer.partfile import (
    check_dirs,
    disk_error,
    fsync,
    refuse_link,
    regular_size,
    remove_meta,
)
from hstsync.transfer.ranges import remove_record
from hstsync.transfer.verify import verify_file

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC

log = logging.getLogger(__name__)


async def finish(
    transfer: Transfer,
    part: Path,
    progress: Progress,
    report: OnProgress,
    *,
    segmented: bool = False,
) -> None:
    """Verify a complete part's content, then give it its final name.

    Verification reads the whole file, so it runs in a worker thread. A part that
    fails it is deleted (its bytes are wrong, resuming from them cannot help) and
    the failure is a :class:`TransferError`, so the retry policy fetches it again.
    A segmented part loses its record only once its bytes are fsynced and sound:
    from then on it is a complete prefix, which is all a part without one may be.
    A body in memory (``progress.body``, a small file) is landed by :func:`land_all`.
    """
    if progress.body is not None:
        body, progress.body = progress.body, None
        try:
            await _lander().land(transfer.root, part, transfer.dest, body)
        except CorruptFileError:
            discard(part)
            report(transfer, -len(body))
            raise  # the retry policy logs it, once
        return
    try:
        check_dirs(transfer.root, part.parent)
        refuse_link(part)
        if segmented:
            await asyncio.to_thread(fsync, part)
        await asyncio.to_thread(verify_file, part, transfer.dest.name)
    except CorruptFileError:
        held = part_size(part)
        discard(part)
        drop_meta(part)
        report(transfer, -held)
        raise  # the retry policy logs it, once
    except OSError as exc:
        raise Refused(disk_error(exc, "reading", part)) from None
    if segmented:
        drop_record(part)
    if progress.total is None:
        progress.total = part_size(part)
    # the fsyncs off the event loop
    lander = _lander()
    made = lander.unsynced(transfer.dest.parent)
    await asyncio.to_thread(
        commit, transfer.root, part, transfer.dest, progress.total, _parents(made)
    )
    lander.synced(made)
    drop_meta(part)


def made_dirs(made: Iterable[str]) -> None:
    """Directories :func:`~hstsync.transfer.partfile.make_dirs` made on this loop: the
    first file landed below each makes its name in its parent durable too."""
    _lander().made.update(made)


def land(root: Path | None, part: Path, dest: Path, body: bytes) -> None:
    """Write a small file's whole ``body`` as ``part``, verify it, fsync it and give it
    its final name, durably (blocking). One file of :func:`land_all`; raises what it
    would hold for it: :class:`CorruptFileError` (the part is the caller's to remove),
    :class:`Refused` or :class:`TransferError`.
    """
    failure = land_all([(root, part, dest, body)])[0]
    if failure is not None:
        raise failure


#: one small file to land: (mirror root, part, final name, its whole body)
Landing = tuple[Path | None, Path, Path, bytes]


def land_all(files: list[Landing], parents: Iterable[str] = ()) -> list[Exception | None]:
    """Land small files from one worker thread: each written as its part, verified,
    fsynced and renamed; then each directory fsynced once for all of them, and the
    ``parents`` of directories made for them (:meth:`_Lander.unsynced`), so that their
    names are durable too. A file's result (None: in place, durably; else the exception
    :func:`land` raises) exists only once those fsyncs are done, so nothing is reported
    done before its name is durable.

    Each directory is checked for links once and then held open: parts are created
    in it, renamed in it and the directory fsynced through that descriptor, so it
    cannot be swapped for a link meanwhile. A part is made fresh (``O_EXCL``); a part
    an earlier attempt or run left is replaced, its validator removed first, since
    these bytes are not the ones it names.
    """
    results: list[Exception | None] = [None] * len(files)
    opened: dict[tuple[Path | None, Path], int] = {}
    renamed: set[int] = set()
    try:
        for i, (root, part, dest, body) in enumerate(files):
            try:
                key = (root, dest.parent)
                dir_fd = opened.get(key)
                if dir_fd is None:
                    try:
                        check_dirs(root, dest.parent)
                        dir_fd = opened[key] = os.open(dest.parent, _DIRECTORY)
                    except OSError as exc:
                        raise Refused(disk_error(exc, "writing", part)) from None
                _land_at(part, dest, body, dir_fd)
                renamed.add(dir_fd)
            except Exception as exc:  # that file's; the others go on
                results[i] = exc
        for dir_fd in renamed:
            with contextlib.suppress(OSError):  # the renames durable
                os.fsync(dir_fd)
        _fsync_parents(parents)
    finally:
        for dir_fd in opened.values():
            os.close(dir_fd)
    return results


def _parents(made: Iterable[str]) -> list[str]:
    """The directories whose fsync makes the names of the directories ``made`` durable."""
    return sorted({os.path.dirname(d) for d in made})


def _fsync_parents(parents: Iterable[str]) -> None:
    for parent in parents:
        with contextlib.suppress(OSError):  # as for the renames: not every file system
            fsync_directory(Path(parent))


def _land_at(part: Path, dest: Path, body: bytes, dir_fd: int) -> None:
    try:
        try:
            fd = os.open(part.name, _CREATE | os.O_EXCL, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            remove_meta(part)
            fd = os.open(part.name, _CREATE | os.O_TRUNC, 0o666, dir_fd=dir_fd)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            verify_file(part, dest.name, body)
            os.fsync(fd)
            held = os.fstat(fd).st_size
        finally:
            os.close(fd)
    except OSError as exc:
        raise Refused(disk_error(exc, "writing", part)) from None
    if held != len(body):  # the promise itself, as in commit
        raise TransferError(f"the partial file holds {held} of {len(body)} bytes")
    try:
        _refuse_link_at(dest, dir_fd)
        os.replace(part.name, dest.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise Refused(disk_error(exc, "finishing", dest)) from None


class _Lander:
    """Small files handed to a worker thread in batches: while one batch lands, the
    files finished meanwhile queue for the next, so several share one thread hop and
    the files of one directory one directory fsync."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: list[tuple[Landing, asyncio.Future[None]]] = []
        self._busy = False
        #: directories this process made whose names in their parents are not durable
        #: yet: the first file landed below one fsyncs its parent (and that file is
        #: not done before), whichever transfer made it
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

    async def land(self, root: Path | None, part: Path, dest: Path, body: bytes) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.append(((root, part, dest, body), future))
        if not self._busy:
            self._next()
        await future

    def _next(self) -> None:
        batch, self._queue = self._queue, []
        self._busy = bool(batch)
        if not batch:
            return
        made: set[str] = set()
        for (_, _, dest, _), _ in batch:
            made |= self.unsynced(dest.parent)
        try:
            running = self._loop.run_in_executor(
                None, land_all, [f for f, _ in batch], _parents(made)
            )
        except RuntimeError as exc:  # the executor is shut down: the loop is closing
            self._landed(batch, [exc] * len(batch))
            return

        def landed(done: asyncio.Future[list[Exception | None]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.synced(made)
            self._landed(batch, _results(done, len(batch)))

        running.add_done_callback(landed)

    def _landed(
        self, batch: list[tuple[Landing, asyncio.Future[None]]], results: list[Exception | None]
    ) -> None:
        for (_, future), failure in zip(batch, results, strict=True):
            if future.done():  # its transfer was cancelled: the file landed all the same
                continue
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)
        self._next()


def _results(done: asyncio.Future[list[Exception | None]], n: int) -> list[Exception | None]:
    if done.cancelled():
        return [TransferError("landing the file was cancelled")] * n
    failure = done.exception()
    if failure is not None:
        return [failure if isinstance(failure, Exception) else TransferError(str(failure))] * n
    return done.result()


_LANDERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lander] = (
    weakref.WeakKeyDictionary()
)


def _lander() -> _Lander:
    loop = asyncio.get_running_loop()
    lander = _LANDERS.get(loop)
    if lander is None:
        lander = _LANDERS[loop] = _Lander(loop)
    return lander


def _refuse_link_at(path: Path, dir_fd: int) -> None:
    """:func:`refuse_link` for ``path``'s name in the open directory ``dir_fd``."""
    try:
        mode = os.lstat(path.name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise OSError(errno.ELOOP, "is a symbolic link", str(path))


def commit(
    root: Path | None, part: Path, dest: Path, size: int, parents: Iterable[str] = ()
) -> None:
    """Give a complete part its final name, durably (and the names of the directories
    made for it: their ``parents`` are fsynced too).

    The rename is the only place a file gets its final name, and it comes after the
    size check and the fsync: a crash leaves a part to resume, never a short file
    that a later pass would take for a finished one. A symbolic link planted at the
    final name (or on the way to it) is refused, not replaced.
    """
    try:
        check_dirs(root, dest.parent)
        refuse_link(dest)
        fd = os.open(part, os.O_RDWR | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
            held = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if held != size:  # callers checked already; this line is the promise itself
            raise TransferError(f"the partial file holds {held} of {size} bytes")
        os.replace(part, dest)
    except OSError as exc:
        raise Refused(disk_error(exc, "finishing", dest)) from None
    with contextlib.suppress(OSError):  # the rename durable; not every file system allows it
        fsync_directory(dest.parent)
    _fsync_parents(parents)


# -- sizes and removals -----------------------------------------------------------------


def file_size(path: Path) -> int | None:
    """The size of a regular file at ``path`` (never through a link), else None."""
    try:
        return regular_size(path)
    except OSError:  # a link, or a path that cannot be read: no file to count
        return None


def part_size(part: Path) -> int:
    """The bytes ``part`` holds (0: no part); a disk that cannot say is :class:`Refused`."""
    try:
        return os.lstat(part).st_size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise Refused(disk_error(exc, "reading", part)) from None


def discard(part: Path) -> None:
    """The part and its segment record gone (a failure to remove is logged)."""
    try:
        part.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", part, exc.strerror)
    drop_record(part)


def drop_record(part: Path) -> None:
    try:
        remove_record(part)
    except OSError as exc:
        log.warning("cannot remove the segment record of %s: %s", part, exc.strerror)


def drop_meta(part: Path) -> None:
    try:
        remove_meta(part)
    except OSError as exc:
        log.warning("cannot remove the validator of %s: %s", part, exc.strerror)
