"""How bytes move: one file from a URL to its final name, verified.

- ``downloader``: :class:`Downloader`, one file's attempts: resume, stream or segments, finish.
- ``outcome``: :class:`Transfer` -> :class:`Outcome` (values), ``after_fallback``.
- ``retry``: the retry policy, all of it (which failures, how many attempts, the waits).
- ``stream``: the whole-file stream, one GET (Range resume) into a plain part.
- ``segmented``: one file as several Range requests at once.
- ``work``: a segmented file's ranges (done, waiting, running) and its checkpointed record.
- ``finish``: a complete part verified, fsynced and renamed; parts and sidecars removed.
- ``http``: the aiohttp edge (session, GET with redirects, reading an answer).
- ``partfile``: the ``.part`` file (its name, writes, symbolic links, the validator sidecar).
- ``ranges``: which byte ranges a segmented file still needs (pure) and its record.
- ``budget``: the connection budget, in total and per host.
- ``verify``: FITS CHECKSUM/DATASUM before a file counts as done.

Never imports ``archive``, ``store`` or ``service``: a transfer knows a URL and a path.
"""
