"""The request directory: reading manifests from it, and setting invalid ones aside.

Manifests are standing requests: they stay in the directory and are re-synced; an
invalid one is moved to ``failed/`` beside a ``NAME.error.txt`` that says why in plain
language. Only regular files are read: a FIFO, a device or a link named like a manifest
is set aside too, saying what it is, and two manifests naming one request
(``dup.toml`` and ``dup.json``) are both set aside, since neither can be told to be the
one meant. Names are file-system data: a note or a log line shows them escaped
(:func:`hstsync.text.printable`), and a note's name is shortened to fit when the
manifest's name is near the longest a file name may be.
:func:`scan` is ``run --once``'s single look. :class:`Intake` is the
daemon's memory of the directory between looks (the versions seen and taken, renames
into place, whether the directory is there at all: a share may be unmounted), and
:class:`Watcher` turns its file events into the daemon's wake-ups; which manifest is
taken when is decided by ``service.daemon.schedule``. :func:`wake` nudges a running daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import Change, awatch

from hstsync.archive import is_manifest_name, parse_manifest, request_name
from hstsync.errors import ManifestError
from hstsync.files import NAME_MAX, atomic_write, open_directory
from hstsync.model import Request
from hstsync.service.daemon.schedule import Take, manifest_due, renamed_in
from hstsync.text import printable

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
#: ``failed/``'s mode: the people who drop manifests (a group, docs/deployment.md) may move
#: theirs back out; other users may not write it, whatever the umask
FAILED_MODE = 0o775
NOTE_SUFFIX = ".error.txt"


@dataclass(frozen=True, slots=True)
class Scan:
    """What the request directory holds right now."""

    requests: list[tuple[Request, Path]]
    invalid: list[tuple[str, Path, str]]  # name, where it was moved, why


def wake(directory: Path) -> None:
    """Nudge a running daemon to look at the database now (after ``hstsync retry``).

    A dot file is never a manifest, but creating it is a file event, and file events
    wake the daemon's scheduler; without one it would look at its next rescan. The
    nudge is a new name (``O_EXCL``): whatever was planted at a name is never opened,
    followed or touched.
    """
    nudge = directory / f".hstsync-wake-{os.getpid()}-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        os.close(os.open(nudge, flags, 0o600))
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.unlink(nudge)


def note_name(path: Path) -> str:
    """``NAME.error.txt`` beside a set-aside manifest; for a name too long for that, its
    first bytes, a digest of the whole name and the suffix (one note per manifest)."""
    name = request_name(path) + NOTE_SUFFIX
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16].encode()
    stem = os.fsencode(request_name(path))[: NAME_MAX - len(NOTE_SUFFIX) - len(digest) - 1]
    return os.fsdecode(stem + b"-" + digest + NOTE_SUFFIX.encode())


def shown_name(path: Path) -> str:
    """The request name of a manifest file as it may be stored and shown."""
    return printable(request_name(path))


def clash_reason(paths: Iterable[Path]) -> str:
    """Why manifests naming the same request are all set aside."""
    names = sorted(printable(path.name) for path in paths)
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    request = shown_name(Path(names[0]))
    return (
        f"{listed} both name the request {request}: neither can be told to be the one "
        "meant; keep one of them"
    )


def _failed_dir(directory: Path, *, create: bool) -> int:
    """An open descriptor of ``directory/failed``, refused when it is not a plain
    directory: a symlink planted there would carry manifests and notes elsewhere."""
    return open_directory(directory / FAILED_DIR, create=create, mode=FAILED_MODE)


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
        atomic_write(
            Path(note_name(path)),
            f"{printable(path.name)} was not taken: {reason}\n"
            f"Fix it and move it back to {printable(str(path.parent))}/ to try again.\n",
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
        os.unlink(note_name(path), dir_fd=fd)
        log.info("request %s: manifest taken; removed its old error note", request_name(path))
    except OSError:
        pass
    finally:
        os.close(fd)


def manifests_in(entries: Iterable[os.DirEntry[str]]) -> dict[str, list[os.DirEntry[str]]]:
    """The entries named like manifests, by request name (directories left out)."""
    found: dict[str, list[os.DirEntry[str]]] = {}
    for entry in entries:
        try:
            if not is_manifest_name(entry.name) or entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        found.setdefault(request_name(Path(entry.path)), []).append(entry)
    return found


def scan(directory: Path) -> Scan:
    """Parse every manifest present; set aside the ones that cannot be taken."""
    requests: list[tuple[Request, Path]] = []
    invalid: list[tuple[str, Path, str]] = []
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for name, group in manifests_in(entries).items():
        paths = [Path(entry.path) for entry in group]
        if len(paths) > 1:
            reason = clash_reason(paths)
            for path in paths:
                moved, why = put_aside(path, reason)
                invalid.append((printable(name), moved, why))
            continue
        [path] = paths
        try:
            requests.append((parse_manifest(path), path))
        except ManifestError as exc:
            moved, reason = put_aside(path, str(exc))
            invalid.append((printable(name), moved, reason))
            continue
        clear_note(path)
    return Scan(requests, invalid)


#: a file's version as the scheduler compares them: (size, mtime_ns)
Version = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Survey:
    """One look at the request directory."""

    #: the request names whose manifests are there
    present: set[str]
    #: the manifests to take now (new or changed, and finished), with their version
    due: list[tuple[Path, Version]]
    #: the directory is readable again after it was missing
    back: bool
    #: manifests naming one request (``dup.toml`` and ``dup.json``), new or changed:
    #: all of them are set aside
    clashes: list[list[tuple[Path, Version]]] = field(default_factory=list)


class Intake:
    """The daemon's memory of the request directory between two looks."""

    def __init__(self, directory: Path, settle: float) -> None:
        self.directory = directory
        self.settle = settle
        self._seen: dict[str, Version] = {}  # file name -> version at the last look
        self._taken: dict[str, Version] = {}  # file name -> the version taken
        self._renamed: dict[str, Version] = {}  # file name -> version just after its rename
        self._device: int | None = None
        #: some manifest may still be being written: look again soon
        self.unsettled = False
        #: the directory could not be read at the last look (a share unmounted?)
        self.missing = False

    def note_renames(self, changes: set[tuple[Change, str]]) -> None:
        """Remember each manifest renamed into place as it is now: that version is
        finished (a later write in place changes its stat and it settles as usual)."""
        for name in renamed_in(changes):
            with contextlib.suppress(OSError):
                info = os.stat(self.directory / name)
                self._renamed[name] = (info.st_size, info.st_mtime_ns)

    def survey(self, *, first: bool, known: int) -> Survey | None:
        """What the directory holds now; None when it cannot be read (``known``: how
        many requests the daemon holds, all kept until it is back)."""
        self.unsettled = False
        now = time.time()
        try:
            device = os.stat(self.directory).st_dev
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except OSError as exc:
            self._gone(exc.strerror or str(exc), known)
            return None
        if self._device is None:
            self._device = device
        elif device != self._device:
            if known and not any(is_manifest_name(e.name) for e in entries):
                # an empty mount point where the share was
                self._gone("now an empty directory on another filesystem", known)
                return None
            self._device = device
        back = self.missing
        if back:
            log.info("the request directory %s is back", self.directory)
            self.missing = False
        present: set[str] = set()
        due: list[tuple[Path, Version]] = []
        clashes: list[list[tuple[Path, Version]]] = []
        for name, group in manifests_in(entries).items():
            seen = [(entry, info) for entry in group if (info := _stat(entry)) is not None]
            if len(seen) > 1:
                clash = [(Path(e.path), (i.st_size, i.st_mtime_ns)) for e, i in seen]
                if any(self._taken.get(path.name) != version for path, version in clash):
                    clashes.append(clash)
                continue
            if not seen:
                continue
            [(entry, info)] = seen
            path = Path(entry.path)
            present.add(printable(name))
            version = (info.st_size, info.st_mtime_ns)
            if not stat.S_ISREG(info.st_mode):
                # a FIFO, a device, a link: never read, set aside at once saying what it is
                if self._taken.get(entry.name) != version:
                    due.append((path, version))
                continue
            take = manifest_due(
                info,
                now,
                previous=self._seen.get(entry.name),
                taken=self._taken.get(entry.name),
                renamed=self._renamed.get(entry.name),
                first=first,
                settle=self.settle,
            )
            self._seen[entry.name] = version
            if take is Take.NOW:
                self._renamed.pop(entry.name, None)
                due.append((path, version))
            elif take is Take.LATER:
                self._renamed.pop(entry.name, None)
                self.unsettled = True
        return Survey(present, due, back, clashes)

    def took(self, file_name: str, version: Version) -> None:
        self._taken[file_name] = version

    def untake(self, file_name: str) -> None:
        """The version could not be recorded: it is taken again at the next look."""
        self._taken.pop(file_name, None)

    def forget(self, file_name: str) -> None:
        """The file was moved away (set aside): a new one of that name is new."""
        self._seen.pop(file_name, None)
        self._taken.pop(file_name, None)

    def _gone(self, why: str, known: int) -> None:
        """The request directory vanished (a share unmounted?): keep every request."""
        if not self.missing:
            log.error(
                "the request directory %s cannot be read (%s): keeping its %d requests "
                "and looking again at the next rescan; check [paths] requests",
                self.directory,
                why,
                known,
            )
        self.missing = True


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError:
        return None


class Watcher:
    """File events in the request directory as wake-ups for the scheduler, and the
    renames among them (``Intake.note_renames``). A crashed watch is restarted; one on
    a directory that came back (a share mounted again) is started anew."""

    def __init__(self, intake: Intake, wake: asyncio.Event, stop: asyncio.Event) -> None:
        self._intake = intake
        self._wake = wake
        self._stop = stop
        self._rewatch = asyncio.Event()  # ends the current watch (stop, directory back)
        self._watching = asyncio.Event()
        self._restarted_until = 0.0

    @property
    def restarting(self) -> bool:
        """Whether a restarted watch may not be up yet (the scheduler polls meanwhile)."""
        return time.monotonic() < self._restarted_until

    def restart(self) -> None:
        """Watch the directory that is there now."""
        self._rewatch.set()
        self._restarted_until = time.monotonic() + 3.0

    def end(self) -> None:
        self._rewatch.set()

    async def run(self) -> None:
        """Turn file events into wake-ups; a crashed watcher is restarted."""
        while not self._stop.is_set():
            self._rewatch = asyncio.Event()
            try:
                async for changes in awatch(
                    self._intake.directory,
                    watch_filter=None,
                    debounce=100,
                    step=20,
                    recursive=False,
                    stop_event=self._rewatch,
                ):
                    self._intake.note_renames(changes)
                    self._watching.set()
                    self._wake.set()
            except Exception as exc:
                if not self._intake.missing:  # that one is said once by the intake
                    log.warning("directory watcher failed (%s); restarting", type(exc).__name__)
                # the event it failed on (a name watchfiles cannot decode, say) is lost:
                # look now, and poll until the new watch is up
                self._restarted_until = time.monotonic() + 3.0
                self._wake.set()
            if not self._stop.is_set():
                await asyncio.sleep(1.0)

    async def started(self, attempts: int = 40) -> None:
        """Until the watcher reports a nudge of ours, so that no file dropped after the
        first scan goes unseen until the next rescan (and renames are told from the
        first one)."""
        for _ in range(attempts):
            wake(self._intake.directory)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watching.wait(), 0.05)
                return
        log.warning("the directory watcher is slow to start; rescans will find new files")
