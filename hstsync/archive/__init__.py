"""What MAST says: manifests, resolution through astroquery, the token, archive and cloud URLs.

- ``manifest``: a request file -> :class:`~hstsync.model.Request`, and back.
- ``resolve``: a Request -> products, through astroquery (blocking; run in a thread).
- ``client``: astroquery's client pointed at the configured server, bounded, with the token.
- ``observations``, ``products``, ``pathlookup``: the Resolver's steps (blocking).
- ``failures``: astroquery's and requests' exceptions as our errors.
- ``paging``: when a list of observations ends, and obsids in product-list batches (pure).
- ``walk``: one resolution as steps (pages, batches, halves) that a driver carries out (pure).
- ``rows``: catalogue rows -> Products: one per dataURI, one owner per path (pure).
- ``cells``: one catalogue cell read as a value: nulls, sizes, text (pure).
- ``seen``: the texts a resolution has met, 16 bytes each (pure).
- ``selection``: why a request selects nothing, in words a person can act on.
- ``auth``: where the MAST token comes from and which hosts may receive it.
- ``keyring_entry``: the token's keyring entry: its name, writing and removing it.
- ``standing``: what the archive says of a token, and the advice people are given.
- ``cloud``: a product's key and URL in the ``stpubdata`` bucket (pure).
- ``collection``: HST and JWST: proposal-id forms, kinds of file counted apart (pure).

Imports only the shared bottom (``config``, ``model``, ``errors``).
"""

from typing import TYPE_CHECKING

from hstsync.faces import lazy

if TYPE_CHECKING:
    from hstsync.archive.auth import Token, check_transport, checked, find_token
    from hstsync.archive.client import preload
    from hstsync.archive.cloud import cloud_source, wants_path_lookup
    from hstsync.archive.collection import COLLECTIONS, is_association, is_guide_star
    from hstsync.archive.keyring_entry import (
        keyring_service,
        remove_from_keyring,
        require_keyring,
        store_in_keyring,
    )
    from hstsync.archive.manifest import (
        is_manifest_name,
        parse_manifest,
        request_name,
        write_manifest,
    )
    from hstsync.archive.paging import Batcher, ObservationPage, batch_sizes
    from hstsync.archive.products import halving
    from hstsync.archive.resolve import Resolver
    from hstsync.archive.rows import Claims
    from hstsync.archive.selection import Sieve
    from hstsync.archive.standing import (
        auth_required_message,
        is_anonymous,
        renewal_advice,
        session_lines,
        session_warning,
        standing_of,
        user_of,
    )
    from hstsync.archive.walk import AskPage, Walk

__all__ = [
    "COLLECTIONS",
    "AskPage",
    "Batcher",
    "Claims",
    "ObservationPage",
    "Resolver",
    "Sieve",
    "Token",
    "Walk",
    "auth_required_message",
    "batch_sizes",
    "check_transport",
    "checked",
    "cloud_source",
    "find_token",
    "halving",
    "is_anonymous",
    "is_association",
    "is_guide_star",
    "is_manifest_name",
    "keyring_service",
    "parse_manifest",
    "preload",
    "remove_from_keyring",
    "renewal_advice",
    "request_name",
    "require_keyring",
    "session_lines",
    "session_warning",
    "standing_of",
    "store_in_keyring",
    "user_of",
    "wants_path_lookup",
    "write_manifest",
]

__getattr__, __dir__ = lazy(
    __name__,
    {
        "auth": ["Token", "check_transport", "checked", "find_token"],
        "client": ["preload"],
        "cloud": ["cloud_source", "wants_path_lookup"],
        "collection": ["COLLECTIONS", "is_association", "is_guide_star"],
        "keyring_entry": [
            "keyring_service",
            "remove_from_keyring",
            "require_keyring",
            "store_in_keyring",
        ],
        "manifest": ["is_manifest_name", "parse_manifest", "request_name", "write_manifest"],
        "paging": ["Batcher", "ObservationPage", "batch_sizes"],
        "products": ["halving"],
        "resolve": ["Resolver"],
        "rows": ["Claims"],
        "selection": ["Sieve"],
        "standing": [
            "auth_required_message",
            "is_anonymous",
            "renewal_advice",
            "session_lines",
            "session_warning",
            "standing_of",
            "user_of",
        ],
        "walk": ["AskPage", "Walk"],
    },
)
