"""What a transfer is asked and what it answers: plain values, no I/O.

Owns :class:`Transfer` (one file to fetch: URL, destination, the catalogue's size as
a hint, credential headers, the mirror root, where a replaced file goes),
:class:`Outcome` (how it ended: a state, counters, the error text, the size the server
sent and how it differs from the catalogue's, the content hash and the validators of
the answer) and :func:`after_fallback`, which joins a cloud attempt and the MAST one
into one Outcome. A failed transfer is data here, never an exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hstsync.model import ProductState


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file to fetch. ``headers`` (e.g. Authorization) are sent, never logged.

    ``size`` is the catalogue's, a hint (None: unknown): the server's stated length
    wins. ``root`` is the mirror: no directory between it and ``dest`` may be a
    symbolic link. ``public``: a 403 is then a rate limiter, retried, not a refusal.
    ``old_to``: the file is fetched even if one of its size is at ``dest`` (a new
    version, or damaged), and the one there goes to ``old_to`` when the new one lands;
    None: a file already at ``dest`` with the expected size is kept, nothing fetched.
    """

    url: str
    dest: Path
    size: int | None
    label: str
    # repr=False: a Transfer in a log line or a traceback must not show the token
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    root: Path | None = None
    public: bool = False
    old_to: Path | None = None


#: follows the bytes held in a transfer's ``.part``: positive per chunk written,
#: negative when a partial file is discarded to start again
OnProgress = Callable[[Transfer, int], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a transfer ended.

    ``fetched`` counts body bytes received over the network by this call;
    ``resumed_from`` the bytes of an existing ``.part`` kept at the first attempt.
    ``size`` is the final file's length once done; ``size_note`` says how it differs
    from the catalogue's (``catalogue says 1,234 bytes, the server sent 1,200``).
    """

    state: ProductState
    fetched: int
    resumed_from: int
    attempts: int
    error: str | None
    #: the size the server sent when it won over the catalogue's (or the catalogue had none)
    size: int | None = None
    #: how the server's size differs from the catalogue's, for status
    size_note: str | None = None
    #: the SHA-256 of the file landed (None: not fetched by this call)
    sha256: str | None = None
    #: the ETag and Last-Modified of the answer the bytes came from, for a later
    #: conditional request (None: the server sent none)
    etag: str | None = None
    last_modified: str | None = None
    #: where the file the new one replaced under the final name was kept
    #: (``Transfer.old_to``, or a free name beside it); None: none was replaced
    replaced: Path | None = None


def after_fallback(cloud: Outcome, mast: Outcome) -> Outcome:
    """One outcome for a product tried in the cloud first and then at MAST.

    MAST's answer decides the state and the error (it is the archive; the cloud is
    a copy). The counters cover both: every attempt and every byte received.
    """
    return dataclasses.replace(
        mast,
        fetched=cloud.fetched + mast.fetched,
        resumed_from=cloud.resumed_from,
        attempts=cloud.attempts + mast.attempts,
    )
