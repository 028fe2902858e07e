"""One mirroring pass: resolve a request, plan its files, fetch them, settle its state.

- ``mirror``: :class:`Mirror`, a pass over requests, orchestrated (:func:`sync_requests`).
- ``resolution``: lookups with the current MAST token; ``lookup``: their worker threads;
  ``standing``: how the token stands with the archive, asked now and then.
- ``planner``: the one planning function (pure); ``holdings``: what the mirror holds;
  ``planning``: a batch planned against the disk (refusals failed, impostors set aside).
- ``fetcher``: the fetch scheduler (session, workers, shared transfers, records).
- ``settlement``: a request's state and last error after a pass (pure).
- ``results``: astroquery's ``download_products`` table per request, as ECSV.
- ``hooks``: the ``on_change`` command: a pass's report, and other events (``Notices``).
- ``verify``: is each file still the archive's (here and on the archive)?
- ``attic``: where replaced versions are kept, for ``[schedule] attic_keep``.

Never imports :mod:`hstsync.service.daemon`: a pass knows nothing of what hosts it.
"""

from typing import TYPE_CHECKING

from hstsync.faces import lazy

if TYPE_CHECKING:
    from hstsync.service.sync.attic import AtticUse, attic_path, clear_old, usage
    from hstsync.service.sync.fetcher import Fetcher
    from hstsync.service.sync.holdings import plan_files
    from hstsync.service.sync.hooks import Notices, PassLog
    from hstsync.service.sync.jobs import PassProgress, download_url
    from hstsync.service.sync.mirror import Mirror, sync_requests
    from hstsync.service.sync.planner import Action, Plan, PlannedFile, room_for
    from hstsync.service.sync.settlement import exit_code
    from hstsync.service.sync.verify import Budget, Finding, Found, Report, Verifier

__all__ = [
    "Action",
    "AtticUse",
    "Budget",
    "Fetcher",
    "Finding",
    "Found",
    "Mirror",
    "Notices",
    "PassLog",
    "PassProgress",
    "Plan",
    "PlannedFile",
    "Report",
    "Verifier",
    "attic_path",
    "clear_old",
    "download_url",
    "exit_code",
    "plan_files",
    "room_for",
    "sync_requests",
    "usage",
]

__getattr__, __dir__ = lazy(
    __name__,
    {
        "attic": ["AtticUse", "attic_path", "clear_old", "usage"],
        "fetcher": ["Fetcher"],
        "jobs": ["PassProgress", "download_url"],
        "holdings": ["plan_files"],
        "hooks": ["Notices", "PassLog"],
        "mirror": ["Mirror", "sync_requests"],
        "planner": ["Action", "Plan", "PlannedFile", "room_for"],
        "settlement": ["exit_code"],
        "verify": ["Budget", "Finding", "Found", "Report", "Verifier"],
    },
)
