"""Telling people what needs them: the ``[hooks] on_change`` command.

A :class:`PassLog` collects, per request, what one pass brought (files that were
transferred and are now done), what it replaced (a new version of a file, or a damaged
copy fetched again: the old one kept in the attic), what the archive stopped listing
(withdrawn) and what it left failed (products, or the request itself when the archive
refused it or it selects nothing). When the pass ends, :meth:`PassLog.finish` records
the pass's end (``last_new_files``, ``mirrored_at``, the fetched-files facts) and, if the
pass brought something new or changed or failed somewhere, runs the configured command
with a JSON document on stdin (``"event": "pass"``).

:class:`Notices` tells the other events worth a person's attention, each once, through
the same command: a manifest set aside, a request whose lookups keep failing, a token
the archive refuses or that expires soon. They are queued where they happen and told
by one task its owner runs (:meth:`Notices.tell_forever`) or waits for
(:meth:`Notices.drain`), so no pass waits for a hook it did not bring about.

A hook never blocks or fails a pass: it runs as a subprocess of its own session with a
timeout (then its whole process group is killed); its exit status and stderr are
logged, and nothing it does is raised. Its environment is the daemon's without the
token (:data:`TOKEN_VARIABLES`): a hook is someone else's program.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hstsync.config import Config
from hstsync.store import Store, utc_now
from hstsync.transfer import HEAD_BYTES, keywords, primary_header

log = logging.getLogger(__name__)

#: stderr kept for the log, from the end (the last lines usually say why)
STDERR_TAIL = 2000


#: files (and failures) a hook's document lists by name; the counts cover them all
LISTED = 1000

#: environment variables that may hold the MAST token: never handed to a hook
TOKEN_VARIABLES = frozenset({"MAST_API_TOKEN"})


@dataclass(slots=True)
class PassReport:
    """What one pass of one request brought and left failed: counted in full, the
    first :data:`LISTED` of each named (a pass of 100,000 new files holds no list of
    them all)."""

    new_files: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    new_file_count: int = 0
    new_bytes: int = 0
    failure_count: int = 0
    #: files replaced by a new version, damaged copies fetched again, files the archive
    #: stopped listing (each entry: path, data_uri and what changed)
    changed: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)
    withdrawn: list[dict[str, Any]] = field(default_factory=list)

    @property
    def worth_telling(self) -> bool:
        return bool(
            self.new_file_count or self.failure_count or self.changed or self.damaged
            or self.withdrawn
        )  # fmt: skip


class PassLog:
    """The reports of the passes running now, one per request."""

    def __init__(self) -> None:
        self._reports: dict[str, PassReport] = {}

    def start(self, request: str) -> None:
        self._reports[request] = PassReport()

    def new_file(self, request: str, path: Path, size: int, data_uri: str) -> None:
        report = self._report(request)
        report.new_file_count += 1
        report.new_bytes += size
        if len(report.new_files) < LISTED:
            report.new_files.append({"path": str(path), "size": size, "data_uri": data_uri})

    def changed(self, request: str, path: Path, data_uri: str, kept: Path, why: str | None) -> None:
        """A file replaced: a new version (``why`` says how it was found) or, when ``why``
        starts with "damaged", a damaged copy fetched again; the old one is at ``kept``."""
        report = self._report(request)
        entry = {"path": str(path), "data_uri": data_uri, "attic": str(kept), "why": why}
        entry |= _versions(kept, path)
        listed = report.damaged if (why or "").startswith("damaged") else report.changed
        if len(listed) < LISTED:
            listed.append(entry)

    def withdrawn(self, request: str, path: Path | None, data_uri: str) -> None:
        """A product the archive (or the manifest) no longer lists; its file stays."""
        report = self._report(request)
        if len(report.withdrawn) < LISTED:
            report.withdrawn.append(
                {"path": None if path is None else str(path), "data_uri": data_uri}
            )

    def failure(
        self, request: str, reason: str, *, path: Path | None = None, data_uri: str | None = None
    ) -> None:
        report = self._report(request)
        report.failure_count += 1
        if len(report.failures) < LISTED:
            report.failures.append(
                {
                    "path": None if path is None else str(path),
                    "data_uri": data_uri,
                    "reason": reason,
                }
            )

    def report(self, request: str) -> PassReport:
        """What the pass of ``request`` running now has brought so far."""
        return self._report(request)

    def _report(self, request: str) -> PassReport:
        return self._reports.setdefault(request, PassReport())

    async def finish(self, config: Config, store: Store, request: str, state: str) -> None:
        """Record the pass's end and run the hook if this pass is worth telling."""
        report = self._reports.pop(request, PassReport())
        row = store.end_pass(request, new_files=report.new_file_count, new_bytes=report.new_bytes)
        if not report.worth_telling or not config.hooks.on_change:
            return
        doc = {
            "event": "pass",
            "request": request,
            "state": state,
            "proposal_ids": list(row.proposal_ids),
            "collection": row.collection,
            "mirror": str(config.paths.mirror),
            "new_files": report.new_files,
            "new_file_count": report.new_file_count,
            "new_bytes": report.new_bytes,
            "failures": report.failures,
            "failure_count": report.failure_count,
            "changed": report.changed,
            "damaged": report.damaged,
            "withdrawn": report.withdrawn,
            "finished": utc_now(),
        }
        await run_hook(
            config.hooks.on_change, doc, config.hooks.timeout, label=f"request {request}"
        )


class Notices:
    """Events worth a person's attention beyond a pass's report, told once each.

    :meth:`post` queues an event's document (never waits); the owner runs
    :meth:`tell_forever` beside its passes, or awaits :meth:`drain` before it exits.
    Without a hook configured, an event is only logged where it happened.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def post(self, event: str, request: str | None, reason: str, **fields: Any) -> None:
        """Queue ``event`` (``manifest_set_aside``, ``lookups_failing``, ``token_refused``,
        ``token_expired``, ``token_expiring``) about ``request`` (None: the process's)."""
        if not self.config.hooks.on_change:
            return
        doc = {"event": event, "request": request, "reason": reason, **fields, "at": utc_now()}
        self._queue.put_nowait(doc)

    async def tell_forever(self) -> None:
        while True:
            await self._tell(await self._queue.get())

    async def drain(self) -> None:
        """Tell every event queued so far."""
        while not self._queue.empty():
            await self._tell(self._queue.get_nowait())

    async def _tell(self, doc: dict[str, Any]) -> None:
        hooks = self.config.hooks
        event, request = doc["event"], doc["request"]
        label = event if request is None else f"request {request} ({event})"
        await run_hook(hooks.on_change, doc, hooks.timeout, label=label)


async def run_hook(command: str, doc: dict[str, Any], seconds: float, *, label: str) -> int | None:
    """Run ``command`` with ``doc`` as JSON on stdin; its exit status, None if it was
    killed after ``seconds`` or could not start. Never raises (but CancelledError).
    ``label`` begins its log lines ("request 7291")."""
    data = (json.dumps(doc, indent=2) + "\n").encode()
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # its own process group: a timeout kills the shell and what it started
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES},
        )
    except OSError as exc:
        log.warning("%s: on_change hook could not start: %s", label, exc.strerror or exc)
        return None
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(data), seconds)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        log.warning("%s: on_change hook did not finish within %g s; killed", label, seconds)
        return None
    except asyncio.CancelledError:
        _kill(proc)
        raise
    text = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
    said = f": {' | '.join(text.splitlines())}" if text else ""
    if proc.returncode:
        log.warning("%s: on_change hook exited %d%s", label, proc.returncode, said)
    else:
        log.info("%s: on_change hook ran%s", label, said)
    return proc.returncode


def _versions(old: Path, new: Path) -> dict[str, Any]:
    """The old and new sizes of a replaced file and, for FITS, what its primary header
    says of its version (``DATE``, ``CAL_VER``…): what a person asks of a change."""
    found: dict[str, Any] = {}
    for key, path in (("old", old), ("new", new)):
        try:
            with open(path, "rb") as fh:  # hstsync's own files: the mirror's and the attic's
                head = fh.read(HEAD_BYTES)
                found[f"{key}_size"] = os.fstat(fh.fileno()).st_size
        except OSError:
            continue
        header = primary_header(head)
        if header is not None:
            found[key] = keywords(header)
    return found


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
