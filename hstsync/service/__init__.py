"""What runs: the mirroring pass, the daemon around it, and what it tells the world.

- ``mirror``: one pass over requests, orchestrated: resolve, plan, fetch, settle.
- ``resolution``: lookups with the current MAST token; ``lookup``: their worker threads.
- ``planner``: the one planning function (pure); ``holdings``: what the mirror holds.
- ``fetcher``: the fetch scheduler (session, workers, shared transfers, records).
- ``settlement``: a request's state and last error after a pass (pure).
- ``daemon``: ``run --once`` and the daemon's lifecycle; ``schedule``: what is due (pure);
  ``requestdir``: the request directory; ``runtime``: directories, run lock, heartbeat.
- ``web``: the daemon's read-only status endpoint; ``status``: its JSON document.
- ``results``: astroquery's download_products table per request, as ECSV.
- ``hooks``: the on_change command; ``runlock``, ``sdnotify``, ``workers``: process plumbing.
"""
