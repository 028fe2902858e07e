"""Telling people when their data arrives: the ``[hooks] on_change`` command.

A :class:`PassLog` collects, per request, what one pass brought (files that were
transferred and are now done) and what it left failed (products, or the request itself
when it could not be resolved). When the pass ends, :meth:`PassLog.finish` stamps the
request's ``last_new_files`` and, if the pass brought something new or failed somewhere,
runs the configured command with a JSON document on stdin.

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

    @property
    def worth_telling(self) -> bool:
        return bool(self.new_file_count or self.failure_count)


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

    def _report(self, request: str) -> PassReport:
        return self._reports.setdefault(request, PassReport())

    async def finish(self, config: Config, store: Store, request: str, state: str) -> None:
        """Stamp ``last_new_files`` and run the hook if this pass is worth telling."""
        report = self._reports.pop(request, PassReport())
        if report.new_file_count:
            store.note_new_files(request)
        if not report.worth_telling or not config.hooks.on_change:
            return
        row = store.get_request(request)
        doc = {
            "request": request,
            "state": state,
            "proposal_ids": list(row.proposal_ids) if row is not None else [],
            "mirror": str(config.paths.mirror),
            "new_files": report.new_files,
            "new_file_count": report.new_file_count,
            "new_bytes": report.new_bytes,
            "failures": report.failures,
            "failure_count": report.failure_count,
            "finished": utc_now(),
        }
        await run_hook(config.hooks.on_change, doc, config.hooks.timeout, label=request)


async def run_hook(command: str, doc: dict[str, Any], seconds: float, *, label: str) -> int | None:
    """Run ``command`` with ``doc`` as JSON on stdin; its exit status, None if it was
    killed after ``seconds`` or could not start. Never raises (but CancelledError)."""
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
        log.warning("request %s: on_change hook could not start: %s", label, exc.strerror or exc)
        return None
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(data), seconds)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        log.warning("request %s: on_change hook did not finish within %g s; killed", label, seconds)
        return None
    except asyncio.CancelledError:
        _kill(proc)
        raise
    text = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
    said = f": {' | '.join(text.splitlines())}" if text else ""
    if proc.returncode:
        log.warning("request %s: on_change hook exited %d%s", label, proc.returncode, said)
    else:
        log.info("request %s: on_change hook ran%s", label, said)
    return proc.returncode


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
