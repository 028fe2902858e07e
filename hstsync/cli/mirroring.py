"""The commands about the mirror itself: ``run``, ``plan``, ``status`` and ``retry``.

Each takes the loaded :class:`Config` and returns its exit code; what they print is
the tables of :mod:`hstsync.cli.report`. Services (and asyncio, astroquery, aiohttp,
sqlite-utils) are imported inside each command, so ``status`` never pays for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hstsync.cli.exits import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from hstsync.errors import ManifestError, StoreError, UsageError

if TYPE_CHECKING:
    from hstsync.config import Config


def cmd_run(config: Config, *, once: bool, verbose: bool = False, quiet: bool = False) -> int:
    """``quiet``: no live progress. ``run --once`` on a terminal otherwise draws bars and
    shows warnings (every log line with ``verbose``), then where each request stands."""
    import asyncio

    from hstsync.service.daemon import limit_malloc_arenas

    limit_malloc_arenas()
    if not once:  # the daemon's house (its watcher, status page, metrics) only for it
        from hstsync.service.daemon import run_forever

        return run_forever(config)
    from hstsync.service.daemon import run_once

    if quiet or not sys.stderr.isatty():
        return asyncio.run(run_once(config))
    from hstsync.cli.progress import TerminalProgress
    from hstsync.cli.report import pass_lines
    from hstsync.errors import StoreError
    from hstsync.store import Store

    with TerminalProgress(quiet_logs=not verbose) as progress:
        code = asyncio.run(run_once(config, progress))
    try:
        with Store.open_readonly(config.paths.database) as store:
            summaries = store.summaries()
    except StoreError:
        return code
    for line in pass_lines(summaries):
        print(line, file=sys.stderr)
    return code


def cmd_plan(config: Config, manifest: Path) -> int:
    from hstsync.archive import Resolver, Sieve, parse_manifest
    from hstsync.cli.report import print_plan
    from hstsync.cli.token import lenient_token
    from hstsync.service.sync import plan_files

    try:
        request = parse_manifest(manifest, follow=True)  # a file named by its user
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    token = lenient_token(config.mast)
    resolver = Resolver(
        config.mast.server, token.value if token else None, timeout=config.mast.timeout
    )
    mirror = config.paths.mirror
    unwritable = unwritable_reason(mirror)
    # a batch of observations at a time: printed as it is resolved, never held whole
    sieve = Sieve(request.filters, request.collection)
    batches = resolver.resolve_batches(request, sieve)
    with contextlib.ExitStack() as stack:
        # what a pass knows of the mirror (sizes the server sent), when there is one
        sizes_sent = None
        if config.paths.database.exists():
            from hstsync.store import Store

            with contextlib.suppress(StoreError):
                store = stack.enter_context(Store.open_readonly(config.paths.database))
                sizes_sent = store.sizes_sent
        plans = (plan_files(b, mirror, sizes_sent) for b in batches)
        fits = print_plan(request.name, plans, unwritable=unwritable, collection=request.collection)
    if sieve.planned:
        print(
            f"{sieve.planned} observation(s) planned, not yet executed: "
            "mirrored at a re-sync once executed"
        )
    empty = sieve.why_none(request.proposal_ids)
    if empty is not None:
        sys.stdout.flush()
        print(f"hstsync: nothing to mirror: {empty}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK if fits and unwritable is None else EXIT_INCOMPLETE


def unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be written under ``directory`` (or the nearest existing parent it
    would be created in), or None when they can."""
    import errno

    target = directory
    while not target.exists() and target.parent != target:
        target = target.parent
    try:
        os.statvfs(target)
    except OSError as exc:
        return f"cannot look at {target}: {exc.strerror}"
    if os.access(target, os.W_OK | os.X_OK):
        return None
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        return f"{target} is on a read-only file system ({errno.errorcode[errno.EROFS]})"
    return f"{target} is not writable by this user"


def cmd_retry(config: Config, request: str | None) -> int:
    from hstsync.store import Store

    with Store(config.paths.database) as store:
        if request is not None and store.get_request(request) is None:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        count = store.retry(request)
        lookups = store.retry_lookups(request)
    if count or lookups:
        from hstsync.service.daemon import wake

        wake(config.paths.requests)
    print(f"{count} product(s) put back in the queue")
    if lookups:
        print(f"{lookups} failed lookup(s) to be tried again now")
    return EXIT_OK


def cmd_status(config: Config, request: str | None, *, as_json: bool) -> int:
    from hstsync.cli import report
    from hstsync.model import TIME_FORMAT
    from hstsync.service.daemon import daemon_status, status_document
    from hstsync.service.sync import usage
    from hstsync.store import Store

    with Store.open_readonly(config.paths.database) as store:
        summaries = store.summaries(request)
        if request is not None and not summaries:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        products = store.products(request) if request is not None else None
        facts = store.facts()
        orphans = store.orphans() if request is None else []
    running, pid, beat = daemon_status(config)
    use = usage(config.paths.mirror) if request is None else None
    kept = None if use is None else (use.files, use.bytes)
    if as_json:
        resync = config.schedule.resync_every
        doc: dict[str, Any] = status_document(summaries, products, resync_every=resync)
        # an ISO time in UTC, as every other time the document holds
        stamp = None if beat is None else time.strftime(TIME_FORMAT, time.gmtime(beat))
        doc["daemon"] = {"running": running, "pid": pid, "heartbeat": stamp}
        doc["token"] = {
            "state": facts.token_state,
            "expires": facts.token_expires,
            "checked": facts.token_checked,
            "message": facts.token_message,
        }
        doc["fetched"] = {"files": facts.fetched_files, "bytes": facts.fetched_bytes}
        if kept is not None:
            doc["attic"] = {"files": kept[0], "bytes": kept[1]}
            doc["orphans"] = {"files": len(orphans), "bytes": sum(size for _, size in orphans)}
        print(json.dumps(doc, indent=2))
    else:
        report.print_status(summaries, products)
        print(report.daemon_line(running, pid, beat, time.time()))
        if (token := report.token_line(facts)) is not None:
            print(token)
        for line in report.upkeep_lines(kept, orphans, config.schedule.attic_keep):
            print(line)
    unfinished = [s.request for s in summaries if s.request.state != "done"]
    if not unfinished:
        return EXIT_OK
    sys.stdout.flush()
    named = ", ".join(f"{r.name} is {r.state}" for r in unfinished[:5])
    more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
    print(f"hstsync: not all done: {named}{more}", file=sys.stderr)
    return EXIT_INCOMPLETE
