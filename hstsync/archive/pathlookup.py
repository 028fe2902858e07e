"""The public bucket's keys of JWST products, as MAST's path-lookup service gives them.

JWST's layout in the ``stpubdata`` bucket has more than one form and not every file is
there, so its keys are asked for, not made up (:mod:`hstsync.archive.cloud` says why,
and computes HST's itself); a pass asks for those of the files it is about to fetch.
The lookup goes through the :class:`~hstsync.archive.client.Client`'s session: the
session's timeout bounds it, and its failures are translated like those of any other
archive call. Blocking.
"""

from __future__ import annotations

from hstsync.archive.client import Client
from hstsync.archive.cloud import checked_key
from hstsync.errors import ResolveError

#: MAST's path-lookup service (a product's key in the public bucket)
PATH_LOOKUP_PATH = "/api/v0.1/path_lookup/"
#: dataURIs asked for in one path lookup: astroquery's own chunk, which keeps the URL
#: under the length servers refuse (414)
PATH_LOOKUP_CHUNK = 50


def path_lookup(client: Client, data_uris: list[str]) -> dict[str, str]:
    """The public bucket's keys of these products, as MAST's path-lookup service
    gives them (what astroquery's cloud module asks); a product the bucket does not
    hold is left out. Blocking; :data:`PATH_LOOKUP_CHUNK` dataURIs a request.

    Asked of the configured server: astroquery's own helper always asks
    ``https://mast.stsci.edu``. A key is kept only if it names the product's own
    file (:func:`~hstsync.archive.cloud.checked_key`).
    """
    keys: dict[str, str] = {}
    url = client.server + PATH_LOOKUP_PATH
    for start in range(0, len(data_uris), PATH_LOOKUP_CHUNK):
        chunk = data_uris[start : start + PATH_LOOKUP_CHUNK]
        with client.translated():
            response = client.obs._session.request(
                "GET", url, params=[("uri", uri) for uri in chunk]
            )
            response.raise_for_status()
            answer = response.json()
        if not isinstance(answer, dict):
            raise ResolveError("unexpected answer from the archive's path lookup")
        for uri in chunk:
            entry = answer.get(uri)
            path = entry.get("path") if isinstance(entry, dict) else None
            key = checked_key(path, uri)
            if key is not None:
                keys[uri] = key
    return keys
