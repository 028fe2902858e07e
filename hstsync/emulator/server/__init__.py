"""The MAST stand-in itself: a real aiohttp server on 127.0.0.1.

Owns the HTTP protocol, exactly as far as astroquery.mast and our downloader use it:
``columnsconfig``, the portal's ``invoke`` (with EXECUTING polling and paging),
``Download/file`` (HEAD, GET, Range, ETag/If-Range, 304 for If-None-Match and
If-Modified-Since, validators switched off on demand, token-guarded exclusive data),
``Download/bundle.sh``, ``whoami`` and ``path_lookup``; path-style under
``/stpubdata/``, the S3 bucket of public files (the same bytes, anonymous, exclusive
data absent); and the emulator's own control calls under ``/emulator/admin/``
(:mod:`~hstsync.emulator.server.admin`).
Every request is recorded; faults from
:mod:`hstsync.emulator.faults` are applied here; bodies come from
:mod:`hstsync.emulator.fits` and are streamed in large chunks with bounded memory,
paced by ``rate`` (bytes/s per response) after ``latency`` seconds.

The real archive's habits (:mod:`hstsync.emulator.quirks`) are acted on here too:
``Emulator(quirks=PortalQuirks(...))`` and each program's portal quirks slow, page
and retype the portal's replies; a product's ``chunked``, ``ranges``, ``style`` and
``redirect`` shape its download. Redirected downloads land on a second listener,
the "cdn" (``Emulator.cdn_url``: ``cdn_host``, ``localhost`` by default, and a port
of its own), which serves the bytes under a signed URL without asking for a token.
Its requests are recorded in the same ``Emulator.requests`` with ``site="cdn"``,
so a test sees whether an ``Authorization`` header or a cookie followed the redirect.
"""

from hstsync.emulator.server.delivery import CHUNK
from hstsync.emulator.server.lifecycle import Emulator, run_in_thread
from hstsync.emulator.server.portal import DEFAULT_PAGESIZE
from hstsync.emulator.server.protocol import (
    ADMIN_PATH,
    BUNDLE_PATH,
    CDN_PATH,
    CLOUD_BUCKET,
    COLUMNS_CONFIG_PATH,
    DOWNLOAD_PATH,
    INVOKE_PATH,
    PATH_LOOKUP_PATH,
    WHOAMI_PATH,
    RecordedRequest,
)

__all__ = [
    "ADMIN_PATH",
    "BUNDLE_PATH",
    "CDN_PATH",
    "CHUNK",
    "CLOUD_BUCKET",
    "COLUMNS_CONFIG_PATH",
    "DEFAULT_PAGESIZE",
    "DOWNLOAD_PATH",
    "INVOKE_PATH",
    "PATH_LOOKUP_PATH",
    "WHOAMI_PATH",
    "Emulator",
    "RecordedRequest",
    "run_in_thread",
]
