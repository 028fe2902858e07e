"""What runs, in two rooms with one door between them.

- ``sync``: one mirroring pass (resolve, plan, fetch, settle, results, hooks).
- ``daemon``: what hosts the passes (``run --once``, the daemon, the request directory,
  the schedule, the status endpoint and the process's plumbing).

``daemon`` uses ``sync``; ``sync`` never imports ``daemon`` (an import-linter contract).
Other packages import from the two faces, :mod:`hstsync.service.sync` and
:mod:`hstsync.service.daemon`.
"""
