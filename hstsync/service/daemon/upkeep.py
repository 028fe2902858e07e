"""Keeping the mirror the archive: ``hstsync verify`` and ``hstsync prune`` run by hand, and
the rolling verify and attic housekeeping after each pass.

- :func:`verify_once`: each request (or one) synced and every file checked
  (``service.sync.verify``); ``dry_run`` checks without fetching or recording anything,
  from a read-only store, beside a running daemon.
- :func:`prune_once`: withdrawn files (the archive or the manifest no longer lists them)
  and orphans (mirrored for a request since removed) moved to the attic. Nothing else
  ever removes a file from the mirror, and nothing but attic housekeeping ever deletes.
- :func:`rolling_verify` and :func:`clear_attic`: what the daemon does after a request's
  pass, and ``run --once`` (the nightly timer) after its pass over every request
  (``[schedule] verify_every``, ``verify_budget``, ``attic_keep``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TypeVar

from hstsync.archive import find_token
from hstsync.config import Config
from hstsync.errors import ConfigError, UsageError
from hstsync.model import TIME_FORMAT, Request
from hstsync.service.daemon.requestdir import scan
from hstsync.service.daemon.runtime import (
    STOP_SIGNALS,
    keeping_alive,
    missing_requests,
    opened_store,
    recover,
)
from hstsync.service.sync import (
    Budget,
    Fetcher,
    Mirror,
    PassLog,
    Report,
    Verifier,
    attic_path,
    clear_old,
)
from hstsync.store import Store
from hstsync.transfer import retire

log = logging.getLogger(__name__)

T = TypeVar("T")


async def stoppable(work: Callable[[], Awaitable[T]]) -> T:
    """``work()``, cancelled by SIGTERM, SIGINT or SIGHUP (partial files stay, rows are
    put back; the caller's ``finally`` blocks run)."""
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, this.cancel)
    try:
        return await work()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _requests(config: Config, name: str | None) -> list[tuple[Request, Path]]:
    try:
        found = scan(config.paths.requests)
    except FileNotFoundError:
        raise ConfigError(missing_requests(config)) from None
    requests = [(r, path) for r, path in found.requests if name is None or r.name == name]
    if name is not None and not requests:
        raise UsageError(f"no manifest named {name!r} in {config.paths.requests}")
    return requests


async def verify_once(config: Config, name: str | None, *, dry_run: bool) -> dict[str, Report]:
    """Verify each request present (or ``name``): its verify report by name."""
    requests = _requests(config, name)
    token = find_token(config.mast.token_file)
    value = token.value if token else None
    reports: dict[str, Report] = {}
    if dry_run:
        with Store.open_readonly(config.paths.database) as store:
            async with Fetcher(config, store, PassLog(), token=lambda: value) as fetcher:
                verifier = Verifier(config, store, fetcher)
                for request, _ in requests:
                    rows = [r for page in store.product_pages(request.name) for r in page]
                    reports[request.name] = await verifier.check(request.name, rows, dry_run=True)
        return reports
    with opened_store(config) as (store, lock):
        recover(store)
        for request, path in requests:
            store.upsert_request(request, str(path))
        async with Mirror(config, store, token=value) as mirror, keeping_alive(lock):
            flusher = asyncio.create_task(mirror.flush_progress_forever())
            try:
                for request, _ in requests:
                    reports[request.name] = await mirror.verify(request)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
    return reports


@dataclass(slots=True)
class Pruned:
    """What prune moved to the attic (``(from, to)`` relative to the mirror), and what
    it left because another request lists it."""

    moved: list[tuple[str, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def prune_once(config: Config, name: str | None, *, dry_run: bool) -> Pruned:
    """Move withdrawn files (of ``name``, or of every request, and the orphans) to the
    attic, and forget them; with ``dry_run``, only say what would move."""
    mirror, pruned = config.paths.mirror, Pruned()
    opener = _readonly(config) if dry_run else opened_store(config)
    with opener as (store, _):
        if name is not None and store.get_request(name) is None:
            raise UsageError(f"no request named {name!r}")
        now = datetime.now(UTC)
        for row in store.withdrawn(name):
            if row.relpath is None:
                continue
            if store.owned_elsewhere(row.relpath, row.request):
                pruned.kept.append(row.relpath)
            elif (to := _retire(mirror, row.relpath, now, dry_run)) is not None:
                pruned.moved.append((row.relpath, to))
            if not dry_run:
                store.forget(row.request, row.product.data_uri)
        if name is None:
            for relpath, _size in store.orphans():
                to = _retire(mirror, relpath, now, dry_run)
                if to is not None:
                    pruned.moved.append((relpath, to))
                if not dry_run:
                    store.forget_orphan(relpath)
    return pruned


@contextlib.contextmanager
def _readonly(config: Config):  # type: ignore[no-untyped-def]
    with Store.open_readonly(config.paths.database) as store:
        yield store, None


def _retire(mirror: Path, relpath: str, now: datetime, dry_run: bool) -> str | None:
    """Move one file to the attic: where it went (None: it was not there)."""
    path, to = mirror / relpath, attic_path(mirror, PurePosixPath(relpath), now)
    if not path.is_file():
        return None
    if dry_run:
        return str(to.relative_to(mirror))
    kept = retire(mirror, path, to)
    log.info("pruned %s to %s", relpath, kept.relative_to(mirror))
    return str(kept.relative_to(mirror))


# -- the upkeep after a pass (daemon and run --once) -------------------------------------


async def rolling_verify(mirror: Mirror, request: Request) -> Report | None:
    """After a request's pass: verify the share of its files due now, so that each is
    checked at least once every ``verify_every``, within ``verify_budget``. None when
    rolling verify is off."""
    schedule = mirror.config.schedule
    if not schedule.verify_every:
        return None
    summary = mirror.store.summaries(request.name)
    done = summary[0].counts.done if summary else 0
    if not done:
        return None
    # a share each pass, so that a program mirrored in one night is not verified in one
    passes = max(schedule.verify_every / schedule.resync_every, 1.0)
    share = math.ceil(done / passes)
    now = datetime.now(UTC)
    slack = max(schedule.verify_every - schedule.resync_every, 0.0)
    before = (now - timedelta(seconds=slack)).strftime(TIME_FORMAT)
    # a file checked (or landed) within the last re-sync period is not checked again yet
    period = min(schedule.resync_every, schedule.verify_every)
    recent = (now - timedelta(seconds=period)).strftime(TIME_FORMAT)
    rows = mirror.store.due_for_verify(request.name, before, share, recent)
    if not rows:
        return None
    budget = Budget(schedule.verify_budget.bytes, schedule.verify_budget.seconds)
    verifier = Verifier(mirror.config, mirror.store, mirror.fetcher)
    mirror.passes.start(request.name)  # the rest of the request's pass, told as one
    report = await verifier.check(request.name, rows, budget=budget)
    if report.findings:
        mirror.store.finish_verify(request.name, report.counts)
        state = mirror.settle(request.name)
        log.info(
            "request %s: %d of %d file(s) verified (%s)",
            request.name,
            len(report.findings),
            done,
            ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())),
        )
    else:
        state = None
    await mirror.passes.finish(mirror.config, mirror.store, request.name, str(state or "done"))
    if len(report.findings) < len(rows):
        log.warning(
            "request %s: verify_budget spent after %d of %d files due; the rest waits for "
            "the next pass",
            request.name,
            len(report.findings),
            len(rows),
        )
    return report


def clear_attic(config: Config) -> None:
    """Remove attic entries older than ``[schedule] attic_keep`` (0: keep them all)."""
    if config.schedule.attic_keep:
        cleared = clear_old(config.paths.mirror, config.schedule.attic_keep)
        for path, why in cleared.failed:
            log.warning("cannot remove %s from the attic: %s", path, why)
        if cleared.files:
            log.info("attic: removed %d old version(s), %d bytes", cleared.files, cleared.bytes)
