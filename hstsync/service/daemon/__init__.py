"""The daemon's house: what hosts the passes and tells the world how they went.

- ``once``: ``run --once`` (:func:`run_once`), what the nightly timer runs.
- ``lifecycle``: the daemon (:class:`Daemon`, :func:`run_forever`): signals, startup,
  the main loop, shutdown; ``manifests``: the requests the request directory makes;
  ``passes``: each request's pass as a task, started when due.
- ``schedule``: what is due and when to wake (pure).
- ``requestdir``: the request directory (scans, intake, the watcher, set-aside notes).
- ``runtime``: directories, the store, the run lock and heartbeat; ``runlock`` the lock
  itself; ``sdnotify`` systemd's notify socket; ``workers`` the worker threads.
- ``web``: the read-only status endpoint; ``metrics``: its Prometheus collector;
  ``status``: the JSON documents it and ``hstsync status --json`` print, and whether
  a request is green.
"""

from typing import TYPE_CHECKING

from hstsync.faces import lazy

if TYPE_CHECKING:
    from hstsync.service.daemon.lifecycle import Daemon, run_forever
    from hstsync.service.daemon.once import run_once
    from hstsync.service.daemon.requestdir import wake
    from hstsync.service.daemon.runlock import daemon_status
    from hstsync.service.daemon.runtime import limit_malloc_arenas
    from hstsync.service.daemon.status import (
        product_document,
        request_document,
        status_document,
    )
    from hstsync.service.daemon.upkeep import Pruned, prune_once, stoppable, verify_once
    from hstsync.service.daemon.web import serving_status

__all__ = [
    "Daemon",
    "Pruned",
    "daemon_status",
    "limit_malloc_arenas",
    "product_document",
    "prune_once",
    "request_document",
    "run_forever",
    "run_once",
    "serving_status",
    "status_document",
    "stoppable",
    "verify_once",
    "wake",
]

__getattr__, __dir__ = lazy(
    __name__,
    {
        "lifecycle": ["Daemon", "run_forever"],
        "once": ["run_once"],
        "requestdir": ["wake"],
        "runlock": ["daemon_status"],
        "runtime": ["limit_malloc_arenas"],
        "status": ["product_document", "request_document", "status_document"],
        "upkeep": ["Pruned", "prune_once", "stoppable", "verify_once"],
        "web": ["serving_status"],
    },
)
