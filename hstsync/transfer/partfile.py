"""One file being fetched, on disk: its ``.part``, its control file, its lock and its hash.

:class:`PartFile` owns a file's whole life between "not there" and "in place": it is
opened (:func:`open_part`: the part locked, its control file read), told that a
fresh answer starts (:meth:`begin`), written at offsets (:meth:`write`), checkpointed
(:meth:`checkpoint`: the bytes fsynced, then the control file that names them),
verified and committed under its final name (:meth:`commit`, with :mod:`.land`), or
emptied (:meth:`reset`) and let go (:meth:`close`). A whole file is a plan of one
range; the same object and the same path serve a file fetched in one stream or in
many ranges.

**The lock.** The part itself is the lock: an exclusive ``flock`` on its descriptor,
held from :func:`open_part` to :meth:`close`, so two processes pointed at one mirror (two
configurations, two databases) never write the same file. The second waits, and once
the first has renamed the part into place it finds the file there.

**A small file** (an answer of at most ``SMALL_BODY`` bytes from byte 0) is held in
memory until it is complete and landed with others in one worker-thread call
(:mod:`.land`): its bytes never sit half-written on disk. A body cut short is written
to the part with its control file (:meth:`spill`) so the next attempt resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hstsync.errors import CorruptFileError, TransferError
from hstsync.transfer.control import (
    Control,
    has_control,
    read_control,
    remove_control,
    write_control,
)
from hstsync.transfer.digest import Digest
from hstsync.transfer.disk import (
    disk_failure,
    part_path,
    preallocate,
    pwrite_all,
)
from hstsync.transfer.land import Landing, finish_part, lander, parents_of
from hstsync.transfer.lock import lock_part, same_file

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Landed:
    """A file in place: its length, the SHA-256 of its bytes, and where a file it replaced
    was kept (the ``old_to`` it was committed with, or a free name beside it)."""

    size: int
    sha256: str
    replaced: Path | None = None


class PartFile:
    """A file on its way to ``dest``: the locked ``.part``, what it holds, its hash.

    ``report(delta)`` follows the bytes held: positive per chunk written, negative when
    held bytes are dropped (a fresh answer replaces them, a corrupt part is emptied).
    """

    def __init__(
        self,
        dest: Path,
        root: Path | None,
        fd: int,
        held: Control | None,
        report: Callable[[int], None],
        *,
        sidecars: bool = False,
    ) -> None:
        self.dest = dest
        self.root = root
        self.path = part_path(dest)
        self._fd: int | None = fd
        #: what the part holds, as its control file says (None: nothing trusted)
        self.held = held
        #: whether the lock was held by another process when this one asked
        self.waited = False
        #: bytes the part held at open that nothing trustworthy names (refetched)
        self.untrusted = 0
        #: body bytes received from the network since it was opened
        self.received = 0
        #: bytes held when it was opened that are still held (none once a fresh answer began)
        self.kept = held.held if held is not None else 0
        self._report = report
        self._digest = Digest()
        self._body: _Body | None = None
        self._legacy = held is not None and held.legacy
        #: a control file (or an earlier version's sidecar) may be beside the part
        self._sidecars = sidecars
        #: held by whoever writes the control file or changes what the part holds; a
        #: checkpoint taken before a change (``_epoch`` moved on) is never written after it
        self._lock = threading.Lock()
        self._epoch = 0
        self._closed = False

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock; an empty part nobody will resume from is removed."""
        with self._lock:  # a checkpoint under way ends first; none starts after
            self._closed = True
            self._epoch += 1
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.held is None and os.fstat(fd).st_size == 0 and same_file(fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise TransferError(f"{self.path} is closed")
        return self._fd

    # -- writing ----------------------------------------------------------------------

    @property
    def in_memory(self) -> bool:
        return self._body is not None

    async def begin(self, control: Control, *, in_memory: bool = False) -> None:
        """A fresh answer: the file's bytes from zero replace whatever the part held.

        On disk the new control file (holding nothing yet) is written first, durably, and
        only then is the part truncated: a crash between the two can never leave an old
        control file naming bytes that are gone. ``in_memory``: the body is held in
        memory until complete (a small file); the part on disk is left as it was, so a
        crash meanwhile still resumes what an earlier run held.
        """
        if self.held is not None and self.held.held:
            self._report(-self.held.held)
        self._digest = Digest()
        self.kept = 0
        if in_memory:
            self._body = _Body()
            self.held = Control(control.size, control.validator)
            return
        self._body = None
        try:
            await _in_thread(self._begin_on_disk, self.fd, control)
        except OSError as exc:
            raise disk_failure(exc, "writing", self.path) from None
        self._sidecars = True
        self._drop_legacy()
        self.held = control

    def _begin_on_disk(self, fd: int, control: Control) -> None:
        with self._lock:
            self._epoch += 1
            write_control(self.path, control)
            os.ftruncate(fd, 0)

    async def preallocate(self, size: int) -> None:
        """Claim the file's space now (a full disk says so before the bytes come)."""
        try:
            await _in_thread(preallocate, self.fd, size)
        except OSError as exc:
            raise disk_failure(exc, "writing", self.path) from None

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes of the file at ``offset`` (in memory: only in order)."""
        if self._body is not None:
            self._body.append(offset, data)
        else:
            try:
                pwrite_all(self.fd, data, offset)
            except OSError as exc:
                raise disk_failure(exc, "writing", self.path) from None
        self._digest.feed(offset, data)
        self.received += len(data)
        self._report(len(data))

    async def checkpoint(self, control: Control) -> None:
        """Make ``control``'s ranges durable: the part fsynced, then the control file.
        A failure is logged: the transfer can go on, a crash would only cost more."""
        if self._body is None:
            await asyncio.to_thread(self.checkpoint_now, control)

    def checkpoint_now(self, control: Control) -> None:
        """:meth:`checkpoint`, blocking: for the moment a transfer stops."""
        try:
            if self._body is None:
                self._checkpoint(control, self._epoch)
        except OSError as exc:
            log.warning("cannot record the progress of %s: %s", self.path, exc.strerror)

    def _checkpoint(self, control: Control, epoch: int) -> None:
        with self._lock:
            fd = self._fd
            if self._closed or fd is None or epoch != self._epoch:
                return  # committed, closed or begun again meanwhile: not these ranges
            os.fsync(fd)  # the bytes first, then the control file that names them
            write_control(self.path, control)
            self.held = control
        self._drop_legacy()

    def spill(self, control: Control) -> None:
        """A small body cut short goes to disk as any part would hold it, for a resume."""
        body, self._body = self._body, None
        if body is None:
            return
        try:
            with self._lock:
                self._epoch += 1
                write_control(self.path, Control(control.size, control.validator))
                self._sidecars = True
                os.ftruncate(self.fd, 0)
                pwrite_all(self.fd, body.joined(), 0)
            self._checkpoint(control, self._epoch)
        except OSError as exc:
            raise disk_failure(exc, "writing", self.path) from None

    def reset(self) -> None:
        """Give up what the part holds (its control file first); the part stays locked."""
        held = self.held.held if self.held is not None else 0
        self._body = None
        try:
            with self._lock:
                self._epoch += 1
                remove_control(self.path, legacy=True)
                os.ftruncate(self.fd, 0)
        except OSError as exc:
            log.warning("cannot empty %s: %s", self.path, exc.strerror)
        self.held = None
        self._digest = Digest()
        self.kept = 0
        if held:
            self._report(-held)

    def _drop_legacy(self) -> None:
        if self._legacy:
            self._legacy = False
            remove_control(self.path, legacy=True)

    # -- committing -------------------------------------------------------------------

    async def commit(
        self, size: int, *, old_to: Path | None = None, require: bool = False
    ) -> Landed:
        """Verify the complete part and give it its final name, durably.

        ``size`` is every byte the server stated (or, unstated, every byte that came).
        ``old_to``: where a file already under the final name goes (hard-linked there
        before the rename, so the final name is never missing). A part that fails the
        content check is emptied and :class:`CorruptFileError` raised: the retry policy
        fetches it again. ``require``: a file nothing can check is not accepted
        (``verify.Unverifiable``; the server's length differs from the catalogue's).
        """
        try:
            if self._body is not None:
                landed = await self._land(size, old_to, require)
            else:
                made = lander().unsynced(self.dest.parent)
                landed = await _in_thread(
                    self._commit, self.fd, size, old_to, parents_of(made), require
                )
                lander().synced(made)
        except CorruptFileError:
            self.reset()  # its bytes are wrong: resuming from them cannot help
            raise
        with self._lock:
            self._closed = True
            self._epoch += 1
        self.held = None
        return landed

    async def _land(self, size: int, old_to: Path | None, require: bool) -> Landed:
        body, self._body = self._body or _Body(), None
        data = body.joined()
        if len(data) != size:
            raise TransferError(f"the body holds {len(data)} of {size} bytes")
        # the lander's own descriptor (the lock is shared): it may finish after a cancel
        fd = os.dup(self.fd)
        replaced = await lander().land(
            Landing(self.root, self.path, self.dest, fd, data, old_to, self._sidecars, require)
        )
        self._sidecars = False
        return Landed(size, self._digest.hexdigest(), replaced)

    def _commit(
        self, fd: int, size: int, old_to: Path | None, parents: list[str], require: bool
    ) -> Landed:
        """Blocking: checked, hashed and renamed, with no checkpoint meanwhile nor after."""
        with self._lock:
            self._epoch += 1
            replaced = finish_part(
                self.root, self.path, self.dest, fd, size, self._digest, old_to, parents, require
            )
        return Landed(size, self._digest.hexdigest(), replaced)


async def open_part(
    dest: Path, root: Path | None, report: Callable[[int], None], *, label: str = ""
) -> PartFile:
    """The part of ``dest``, created if need be and locked; what it holds read.

    Raises ``OSError`` for a link or anything but a regular file at the part's name
    or its control file's (:func:`~hstsync.transfer.disk.open_regular`).
    """
    path = part_path(dest)
    fd, waited = await lock_part(path, label)
    try:
        size = os.fstat(fd).st_size  # locked: nobody else writes it now
        sidecars = bool(size) or has_control(path)
        held = read_control(path, size) if sidecars else None
    except BaseException:
        os.close(fd)
        raise
    part = PartFile(dest, root, fd, held, report, sidecars=sidecars)
    part.waited = waited
    if held is None:
        part.untrusted = size
    return part


class _Body:
    """A small file's body held in memory until it is complete (in order only)."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def append(self, offset: int, data: bytes | memoryview) -> None:
        if offset != self._size:
            raise TransferError(f"a small body out of order at byte {offset}")
        self._chunks.append(bytes(data))
        self._size += len(data)

    def joined(self) -> bytes:
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


async def _in_thread(fn: Callable[..., T], fd: int, *args: Any) -> T:
    """``fn(fd, *args)`` in a worker thread on a descriptor of its own: a cancelled caller
    closes its part while the thread may still be at work, and a closed number can be
    reused by any file the process opens next."""
    own = os.dup(fd)

    def run() -> T:
        try:
            return fn(own, *args)
        finally:
            os.close(own)

    return await asyncio.to_thread(run)


def held_bytes(dest: Path) -> int:
    """Bytes of ``dest`` already fetched into its ``.part`` and trusted for a resume, as
    its control file says (0: none, or a part that cannot be read as one)."""
    part = part_path(dest)
    try:
        size = os.lstat(part).st_size
        control = read_control(part, size) if size or has_control(part) else None
    except OSError:
        return 0
    return control.held if control is not None else 0
