"""How bytes move: one file from a URL to its final name, verified.

- ``downloader``: :class:`Transfer` -> :class:`Outcome`, retries, Range resume, finish.
- ``http``: the aiohttp edge (session, GET with redirects, reading an answer).
- ``partfile``: the ``.part`` file (its name, positional writes, disk errors).
- ``ranges``: which byte ranges a segmented file still needs (pure) and its record.
- ``segmented``: one file as several Range requests at once.
- ``budget``: the connection budget, in total and per host.
- ``verify``: FITS CHECKSUM/DATASUM before a file counts as done.

Never imports ``archive``, ``store`` or ``service``: a transfer knows a URL and a path.
"""
