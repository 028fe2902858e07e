"""Is the mirror still the archive? Each file checked here, and on the archive.

:class:`Verifier` checks a request's mirrored files, each in two steps:

- **here**: the file is there, has its size, and its bytes hash to the SHA-256 recorded
  when it landed (a file landed before hashes were kept gets its hash now, after the
  same content check as a download);
- **on the archive**: a probe (:meth:`~hstsync.transfer.Downloader.probe`) asks whether
  the archive's copy changed since ours was fetched: a conditional request when we hold
  the answer's validators, else the head of the file compared with ours (at most
  ``HEAD_BYTES`` of it read).

A file missing here is fetched again; one damaged here, or changed on the archive, is
fetched again with ours kept in the attic (``service.sync.attic``). Every check counts
toward a :class:`Budget` (bytes read here, time), so that the daemon's rolling verify
takes a share of the mirror each pass; ``hstsync verify`` checks everything. Each file
ends with a :class:`Finding`; the request's last verify and its verdicts are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hstsync.config import Config
from hstsync.errors import CorruptFileError, StoreError
from hstsync.model import ProductState, Request
from hstsync.service.sync.attic import attic_path
from hstsync.service.sync.fetcher import Fetcher
from hstsync.service.sync.jobs import Job, download_url
from hstsync.store import ProductRow, Store
from hstsync.transfer import Transfer, Verdict, file_size, hash_file, verify_file

if TYPE_CHECKING:
    from hstsync.service.sync.mirror import Mirror

log = logging.getLogger(__name__)


class Found(enum.StrEnum):
    """What verify found of one product's file."""

    SAME = "same"
    #: the archive's copy changed: ours was a version ago (fetched again, ours kept)
    CHANGED = "changed"
    #: not there (fetched again)
    MISSING = "missing"
    #: there, but its bytes are not what landed (fetched again, the damaged copy kept)
    DAMAGED = "damaged"
    #: the archive (or the manifest) no longer lists it: reported, its file kept
    WITHDRAWN = "withdrawn"
    #: it could not be checked (the archive did not answer, refused, or has no copy)
    UNCHECKED = "unchecked"
    #: listed but not mirrored (still to fetch, failed, waiting for a token)
    NOT_MIRRORED = "not mirrored"


#: the verdicts that mean the file is, at the end, not the archive's
NOT_TRUE = frozenset({Found.UNCHECKED, Found.NOT_MIRRORED})


@dataclass(frozen=True, slots=True)
class Finding:
    request: str
    data_uri: str
    #: where the file is under the mirror (None: the catalogue gives no usable path)
    path: str | None
    found: Found
    reason: str | None = None
    #: fetched again, and now the archive's (changed, missing, damaged)
    refetched: bool = False
    #: why fetching it again failed
    error: str | None = None

    @property
    def true(self) -> bool:
        """Whether, at the end, the file is the archive's (withdrawn ones do not count)."""
        if self.found in NOT_TRUE:
            return False
        if self.found in (Found.CHANGED, Found.MISSING, Found.DAMAGED):
            return self.refetched
        return True


@dataclass(slots=True)
class Budget:
    """How much one verify may do: bytes read here, and time (None: no limit)."""

    bytes: int | None = None
    seconds: float | None = None
    read: int = 0
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> bool:
        if self.bytes is not None and self.read >= self.bytes:
            return True
        return self.seconds is not None and time.monotonic() - self.started >= self.seconds


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(str(f.found) for f in self.findings)

    @property
    def true(self) -> bool:
        return all(f.true for f in self.findings)


class Verifier:
    """Checks of mirrored files and their refetches, on a pass's fetcher and store."""

    def __init__(self, config: Config, store: Store, fetcher: Fetcher) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher

    async def check(
        self, request: str, rows: Iterable[ProductRow], *, dry_run: bool = False,
        budget: Budget | None = None, fresh: Collection[str] = (),
    ) -> Report:  # fmt: skip
        """Check the files of ``rows`` (of ``request``), ``concurrency`` at a time, and
        fetch again what is not the archive's (not with ``dry_run``). Products in
        ``fresh`` (dataURIs fetched moments ago by this very run) count as the same;
        with a ``budget``, checks stop once it is spent."""
        report = Report()
        budget = budget or Budget()
        queue: asyncio.Queue[ProductRow | None] = asyncio.Queue(self.config.download.concurrency)

        async def worker() -> None:
            while (row := await queue.get()) is not None:
                report.findings.append(await self._one(request, row, dry_run, budget, fresh))

        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(worker()) for _ in range(queue.maxsize)]
            async for row in _rows(rows):
                if budget.spent():
                    break
                finding = _at_once(request, row)
                if finding is not None:
                    report.findings.append(finding)
                else:
                    await queue.put(row)
            for _ in workers:
                await queue.put(None)
        self.fetcher.flush()
        return report

    async def _one(
        self, request: str, row: ProductRow, dry_run: bool, budget: Budget, fresh: Collection[str]
    ) -> Finding:
        uri, relpath = row.product.data_uri, row.relpath
        assert relpath is not None  # _at_once answered rows without one
        if uri in fresh:
            return Finding(request, uri, relpath, Found.SAME)
        dest = self.config.paths.mirror / relpath
        found, reason = await self._here(request, row, dest, budget)
        if found is Found.SAME:
            found, reason = await self._there(request, row, dest)
        if found in (Found.SAME, Found.UNCHECKED) or dry_run:
            if found is Found.SAME and not dry_run:
                self._verified(request, uri)
            return Finding(request, uri, relpath, found, reason)
        log.info("request %s: %s is %s (%s); fetching it again", request, relpath, found, reason)
        old_to = None if found is Found.MISSING else attic_path(self.config.paths.mirror, relpath)
        job = Job(request, row.product, dest, 0, old_to=old_to, why=f"{found}: {reason}")
        outcome = await self.fetcher.fetch(job)
        done = outcome.state is ProductState.DONE
        return Finding(request, uri, relpath, found, reason, done, None if done else outcome.error)

    async def _here(
        self, request: str, row: ProductRow, dest: Path, budget: Budget
    ) -> tuple[Found, str | None]:
        """The file here: there, of its size, hashing to what landed."""
        size = file_size(dest)
        if size is None:
            return Found.MISSING, "no file under its name"
        expected = row.product.size
        if expected is not None and size != expected:
            return Found.DAMAGED, f"{size:,} bytes, the archive's {expected:,}"
        budget.read += size
        try:
            digest = await asyncio.to_thread(hash_file, dest)
        except OSError as exc:
            return Found.UNCHECKED, f"cannot read it: {exc.strerror or exc}"
        if row.sha256 is None:
            # landed before hashes were kept: its content checked as a download's, and
            # the hash of what is there recorded from now on
            try:
                await asyncio.to_thread(verify_file, dest, dest.name)
            except CorruptFileError as exc:
                return Found.DAMAGED, str(exc)
            except OSError as exc:
                return Found.UNCHECKED, f"cannot read it: {exc.strerror or exc}"
            self._record(request, row.product.data_uri, sha256=digest)
        elif digest != row.sha256:
            return Found.DAMAGED, "its bytes no longer hash to the SHA-256 recorded when it landed"
        return Found.SAME, None

    async def _there(self, request: str, row: ProductRow, dest: Path) -> tuple[Found, str | None]:
        """The archive's copy: the same as ours, or changed since."""
        transfer = Transfer(
            url=download_url(self.config.mast.server, row.product.data_uri),
            dest=dest,
            size=row.product.size,
            label=f"{request}:{row.product.filename}",
            headers=self.fetcher.credentials(),
            root=self.config.paths.mirror,
            public=row.product.is_public,
        )
        probe = await self.fetcher.probe(transfer, etag=row.etag, last_modified=row.last_modified)
        if probe.verdict is Verdict.SAME:
            if row.etag is None and (probe.etag or probe.last_modified):
                # validators the archive sends now: the next verify asks conditionally
                self._record(
                    request, row.product.data_uri, etag=probe.etag, modified=probe.last_modified
                )
            return Found.SAME, None
        if probe.verdict is Verdict.CHANGED:
            versions = ""
            if probe.ours and probe.theirs and probe.ours != probe.theirs:
                changed = {k: (probe.ours.get(k), v) for k, v in probe.theirs.items()}
                versions = "; " + ", ".join(
                    f"{k} {a} -> {b}" for k, (a, b) in changed.items() if a != b
                )
            return Found.CHANGED, f"{probe.reason}{versions}"
        return Found.UNCHECKED, f"{probe.verdict}: {probe.reason}"

    def _record(
        self,
        request: str,
        uri: str,
        *,
        sha256: str | None = None,
        etag: str | None = None,
        modified: str | None = None,
    ) -> None:
        with contextlib.suppress(StoreError):  # the request may be gone meanwhile
            self.store.record_content(
                request, uri, sha256=sha256, etag=etag, last_modified=modified
            )

    def _verified(self, request: str, uri: str) -> None:
        with contextlib.suppress(StoreError):
            self.store.record_content(request, uri, verified=True)


def _at_once(request: str, row: ProductRow) -> Finding | None:
    """The finding of a row that needs no check (None: it does)."""
    uri = row.product.data_uri
    if row.state is ProductState.WITHDRAWN:
        return Finding(request, uri, row.relpath, Found.WITHDRAWN, "no longer listed")
    if row.state is not ProductState.DONE or row.relpath is None:
        why = row.last_error or str(row.state)
        return Finding(request, uri, row.relpath, Found.NOT_MIRRORED, why)
    return None


async def _rows(rows: Iterable[ProductRow]) -> AsyncIterator[ProductRow]:
    for row in rows:
        yield row


async def verify_request(
    mirror: Mirror, request: Request, *, dry_run: bool = False, budget: Budget | None = None
) -> Report:
    """``hstsync verify`` of one request: a pass (the catalogue asked again: withdrawn
    products, new versions and files lost here are found and fetched), then every file
    checked here and on the archive. ``dry_run``: no pass, nothing fetched or recorded;
    the checks only, of the request as last resolved."""
    name, store = request.name, mirror.store
    verifier = Verifier(mirror.config, store, mirror.fetcher)
    if dry_run:
        report = await verifier.check(name, _pages(store, name), dry_run=True, budget=budget)
        log.info("request %s: verified (dry run): %s", name, _summary(report))
        return report
    done = {
        r.product.data_uri
        for rows in store.product_pages(name)
        for r in rows
        if r.state is ProductState.DONE
    }
    mirror.begin(request)
    await mirror.run(request)
    passed = mirror.passes.report(name)
    changed = {str(e["data_uri"]): str(e["why"]) for e in passed.changed}
    new = {str(e["data_uri"]) for e in passed.new_files}
    fresh = set(changed) | new  # fetched by the pass just now: the archive's
    report = await verifier.check(name, _pages(store, name), budget=budget, fresh=fresh)
    for i, finding in enumerate(report.findings):
        # what the pass itself fetched again: a new version in the catalogue, a file lost
        if finding.data_uri in changed:
            found = Found.CHANGED, changed[finding.data_uri]
        elif finding.data_uri in new and finding.data_uri in done:
            found = Found.MISSING, "no file under its name"
        else:
            continue
        report.findings[i] = Finding(name, finding.data_uri, finding.path, *found, refetched=True)
    store.finish_verify(name, report.counts)
    state = mirror.settle(name)
    await mirror.passes.finish(mirror.config, store, name, str(state))
    log.info("request %s: verified: %s", name, _summary(report))
    return report


def _pages(store: Store, name: str) -> Iterator[ProductRow]:
    for rows in store.product_pages(name):
        yield from rows


def _summary(report: Report) -> str:
    counts = report.counts
    return (
        ", ".join(f"{counts[str(f)]} {f}" for f in Found if counts[str(f)]) or "nothing to verify"
    )
