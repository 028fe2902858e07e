"""The manifests the daemon holds, kept to the request directory's listing.

Each survey of the directory (``service.daemon.requestdir.Intake``) says which manifests
are due to be read, which clash (two naming one request) and which are gone; here they
become requests in the store: a manifest read and queued, a changed one re-planned
(its running pass cancelled), one that cannot be read set aside into ``failed/`` with
its reason (and the hook told), a removed one's request stopped and forgotten.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hstsync.archive import parse_manifest
from hstsync.errors import ManifestError, StoreError
from hstsync.model import Request, RequestState
from hstsync.service.daemon.passes import Passes
from hstsync.service.daemon.requestdir import (
    Intake,
    Version,
    Watcher,
    clash_reason,
    clear_note,
    put_aside,
    shown_name,
)
from hstsync.service.daemon.runtime import forget_removed
from hstsync.service.sync import Notices
from hstsync.store import Store
from hstsync.text import printable

log = logging.getLogger(__name__)


class Manifests:
    """Request name -> the request its manifest makes, as of the last survey."""

    def __init__(self, intake: Intake, watcher: Watcher, passes: Passes) -> None:
        self._intake = intake
        self._watcher = watcher
        self._passes = passes
        self.current: dict[str, Request] = {}
        #: the events the hook is told (the mirror's, once it is there)
        self.notices: Notices | None = None

    async def rescan(self, store: Store, *, first: bool = False) -> None:
        """Read the directory again and bring the requests in line with it."""
        survey = self._intake.survey(first=first, known=len(self.current))
        if survey is None:
            return
        if survey.back:
            self._watcher.restart()
        for clash in survey.clashes:
            await self._refuse(store, clash)
        for path, version in survey.due:
            self._intake.took(path.name, version)
            try:
                await self._take(store, path, shown_name(path))
            except StoreError:
                self._intake.untake(path.name)  # taken again once the database recovers
                raise
        for name in list(self.current):
            if name not in survey.present:
                await self._passes.cancel(name)
                store.remove_request(name)  # first: a failed write is tried again
                del self.current[name]
                log.info("request %s: manifest removed, request stopped", name)
        # manifests removed while the daemon was down, and set-aside ones removed from
        # failed/ (no file event there: noticed at a rescan)
        forget_removed(store, survey.present)

    async def _refuse(self, store: Store, clash: list[tuple[Path, Version]]) -> None:
        """Manifests naming one request: its pass stops, and all of them are set aside."""
        name = shown_name(clash[0][0])
        await self._passes.cancel(name)
        self.current.pop(name, None)
        reason = clash_reason(path for path, _ in clash)
        moved, why = clash[0][0], reason
        for path, version in clash:
            self._intake.took(path.name, version)  # tried once, not at every look
            moved, why = put_aside(path, reason)
            if moved != path:
                self._intake.forget(path.name)
        store.record_invalid(name, printable(str(moved)), why)

    async def _take(self, store: Store, path: Path, name: str) -> None:
        try:
            request = parse_manifest(path)
        except ManifestError as exc:
            await self._passes.cancel(name)
            self.current.pop(name, None)
            moved, reason = put_aside(path, str(exc))
            if moved != path:
                self._intake.forget(path.name)
            store.record_invalid(name, printable(str(moved)), reason)
            if self.notices is not None:
                self.notices.post("manifest_set_aside", name, reason, manifest=str(moved))
            return
        clear_note(path)
        before = store.get_request(name)
        row = store.upsert_request(request, printable(str(path)))
        if before is not None and before.digest != row.digest:
            log.info("request %s: manifest changed, re-planning", name)
            await self._passes.cancel(name)
            store.set_request_state(name, RequestState.QUEUED)
        elif before is None:
            log.info("request %s: queued (proposal %s)", name, ", ".join(request.proposal_ids))
        self.current[name] = request
