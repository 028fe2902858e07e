"""What a transfer is asked and what it answers: plain values, no I/O.

Owns :class:`Transfer` (one file to fetch: URL, destination, the catalogue's size as
a hint, credential headers, the mirror root), :class:`Outcome` (how it ended: a
state, counters, the error text, the size the server sent and how it differs from
the catalogue's), :class:`Progress` (what one fetch has done so far, which becomes
its Outcome) and :func:`after_fallback`, which joins a cloud attempt and the MAST
one into one Outcome. A failed transfer is data here, never an exception.
"""

from __future__ import annotations

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
    """

    url: str
    dest: Path
    size: int | None
    label: str
    # repr=False: a Transfer in a log line or a traceback must not show the token
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    root: Path | None = None
    public: bool = False


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


@dataclass(slots=True)
class Progress:
    """What one :meth:`~hstsync.transfer.downloader.Downloader.fetch` call has done so far."""

    attempts: int = 0
    fetched: int = 0
    resumed_from: int = 0
    #: a strong ETag or Last-Modified seen this call, sent back as If-Range
    validator: str | None = None
    #: whether an answer came this call (then ``validator`` is this call's own)
    answered: bool = False
    #: the file's length as the server stated it (None: not stated, e.g. chunked)
    total: int | None = None
    #: a small file's whole body, received in memory and not yet written (finish writes it)
    body: bytes | None = None


def after_fallback(cloud: Outcome, mast: Outcome) -> Outcome:
    """One outcome for a product tried in the cloud first and then at MAST.

    MAST's answer decides the state and the error (it is the archive; the cloud is
    a copy). The counters cover both: every attempt and every byte received.
    """
    return Outcome(
        state=mast.state,
        fetched=cloud.fetched + mast.fetched,
        resumed_from=cloud.resumed_from,
        attempts=cloud.attempts + mast.attempts,
        error=mast.error,
        size=mast.size,
        size_note=mast.size_note,
    )
