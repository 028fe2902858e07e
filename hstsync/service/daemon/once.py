"""``hstsync run --once``, what the nightly timer runs: take every manifest present,
mirror them all, keep the mirror (the share of files due verified, old attic entries
cleared), and exit with the code the states make.

It stands on what the daemon stands on (``service.daemon.runtime``: the run lock, the
store, the heartbeat) and hosts the same pass (:mod:`hstsync.service.sync`), once.
"""

from __future__ import annotations

import asyncio
import logging

from hstsync.archive import find_token
from hstsync.config import Config
from hstsync.errors import ConfigError, DiskFullError, StoreError
from hstsync.model import RequestState
from hstsync.service.daemon.requestdir import scan
from hstsync.service.daemon.runtime import (
    STOP_SIGNALS,
    DatabaseFile,
    first_store_error,
    forget_removed,
    keeping_alive,
    missing_requests,
    opened_store,
    raise_open_files_limit,
    recover,
)
from hstsync.service.daemon.upkeep import clear_attic, rolling_verify
from hstsync.service.daemon.workers import use_worker_threads
from hstsync.service.sync import Mirror, PassProgress, exit_code, sync_requests
from hstsync.text import printable

__all__ = ["run_once"]

log = logging.getLogger(__name__)


async def run_once(config: Config, progress: PassProgress | None = None) -> int:
    """Take every manifest present, mirror it, and return the exit code.

    SIGTERM, SIGINT and SIGHUP cancel the pass: partial files stay for resume and
    rows go back to pending, so the next pass (or the daemon) carries on. A second
    signal cancels again, cutting short whatever the cleanup still waits for; the
    store is closed either way. A worker thread stuck in astroquery is not waited
    for (:mod:`hstsync.service.daemon.workers`).
    """
    loop = asyncio.get_running_loop()
    use_worker_threads(loop)
    raise_open_files_limit()
    this = asyncio.current_task()
    assert this is not None
    signalled: list[int] = []

    def interrupt(signum: int) -> None:
        signalled.append(signum)
        if len(signalled) > 1:
            log.warning("second signal: stopping without waiting for in-flight work")
        this.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, interrupt, signum)
    try:
        return await _one_pass(config, progress)
    except DiskFullError as exc:
        log.error("%s", exc)
        return 1
    except asyncio.CancelledError:
        if not signalled:
            raise
        while this.uncancel():
            pass
        log.warning("interrupted: partial files are kept and resume on the next run")
        return 1
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _one_pass(config: Config, progress: PassProgress | None) -> int:
    token = find_token(config.mast.token_file, server=config.mast.server)
    failure: StoreError | None = None
    with opened_store(config) as (store, lock):
        database = DatabaseFile.of(config.paths.database)
        try:
            found = scan(config.paths.requests)
        except FileNotFoundError:
            raise ConfigError(missing_requests(config)) from None
        try:
            recover(store)
            for name, moved, reason in found.invalid:
                store.record_invalid(name, printable(str(moved)), reason)
            forget_removed(store, {request.name for request, _ in found.requests})
            for request, path in found.requests:
                store.upsert_request(request, printable(str(path)))
            async with (
                Mirror(
                    config,
                    store,
                    token=token.value if token else None,
                    token_source=lambda: token,  # where it came from, for advice
                    progress=progress,
                ) as mirror,
                keeping_alive(lock),
            ):
                for name, moved, reason in found.invalid:
                    mirror.notices.post("manifest_set_aside", name, reason, manifest=str(moved))
                states = await sync_requests(mirror, [request for request, _ in found.requests])
                # the nightly timer's run keeps the mirror as the daemon does
                for request, _ in found.requests:
                    if await rolling_verify(mirror, request) is not None:
                        row = store.get_request(request.name)
                        if row is not None:
                            states[request.name] = row.state
                await asyncio.to_thread(clear_attic, config)
                await mirror.notices.drain()
            # set aside now or before, and not removed from failed/ since: as status says
            invalid = any(row.state is RequestState.INVALID for row in store.list_requests())
        except* StoreError as group:
            failure = first_store_error(group)
        if (gone := database.changed()) is not None:
            log.error("%s", gone)
            return 1
    if failure is not None:
        # The database could not be written (disk full, I/O error): every transaction
        # either happened or not, and the next run takes up where this one stopped.
        log.error("%s; stopping (the next run resumes)", failure)
        return 1
    if invalid:
        return 1
    return exit_code(states.values())
