"""What runs: the mirroring pass, the daemon around it, and what it tells the world.

- ``mirror``: one pass over requests: resolve, plan, download, record.
- ``planner``: what a request would fetch, and whether the mirror has room (pure).
- ``daemon``: ``run --once`` and the daemon: watch -> schedule -> mirror; signals.
- ``web``: the daemon's read-only status endpoint; ``status``: its JSON document.
- ``results``: astroquery's download_products table per request, as ECSV.
- ``sdnotify``: systemd's READY/STOPPING/WATCHDOG without a dependency.
"""
