"""The error hierarchy: every exception hstsync defines lives here.

Every failure a user can meet has a class here. The CLI turns them into one line
and an exit code; the daemon turns them into a state and a ``last_error``.
Messages are written for people and never carry a token or request headers.

::

    HstsyncError
    ├── ConfigError            the configuration is missing or invalid (exit 2)
    │   └── UsageError         bad command-line arguments (exit 2)
    ├── ManifestError          a manifest is unreadable or invalid: set aside
    ├── ResolveError           the archive could not resolve a request
    │   ├── ArchiveUnavailable no connection, no answer in time, 5xx/429: retried
    │   └── CatalogueValueError one catalogue cell unusable: that product fails alone
    ├── UnsafePathError        catalogue data would place a file outside the mirror
    ├── AuthError              a token cannot be checked, stored or removed
    ├── AuthRequiredError      a product refused without a valid token (401/403)
    ├── TransferError          a transfer failed in a way worth retrying
    │   ├── TooSlow            slower than [download] min_speed: cut, resumed
    │   ├── RetryLater         429/503, with the server's wait if it gave one
    │   └── CorruptFileError   right size, wrong bytes (FITS check): fetch again
    ├── Refused                another attempt would not change it (404, disk)
    ├── RangesRefused          segments were refused: fall back to one transfer
    ├── StoreError             the database cannot be opened or written
    │   └── DiskFullError      its filesystem is full (exit 1: a pause, not a fault)
    └── AlreadyRunningError    another ``hstsync run`` holds the database (exit 2)

``RetryLater``, ``Refused``, ``RangesRefused`` and ``CorruptFileError`` are the
transfer package's own signals: a :class:`~hstsync.transfer.downloader.Downloader`
turns each into an ``Outcome`` and never lets one escape. (The manifest parser's
``Invalid`` (``archive/validate.py``) never leaves ``archive`` either: it becomes a
``ManifestError``.)
"""


class HstsyncError(Exception):
    """Base of every error hstsync raises on purpose."""


class ConfigError(HstsyncError):
    """The configuration file is missing, unreadable or invalid (exit 2)."""


class UsageError(ConfigError):
    """Bad command-line arguments: exit 2 with the reason."""


class ManifestError(HstsyncError):
    """A manifest cannot be read or is invalid; the request is set aside."""


class ResolveError(HstsyncError):
    """The archive could not resolve a request into products."""


class ArchiveUnavailable(ResolveError):
    """Trouble worth trying again soon: no connection, no answer in time, a 5xx or 429,
    or the portal's ``status: ERROR``."""


class CatalogueValueError(ResolveError, ValueError):
    """One cell of a catalogue row cannot be used; the message says which and why.
    Only that product fails (its ``problem``), never the request."""


class UnsafePathError(HstsyncError):
    """Catalogue data would place a file outside the mirror."""


class AuthError(HstsyncError):
    """A token cannot be checked, stored or removed; the message says what to do."""


class AuthRequiredError(HstsyncError):
    """The archive refused a product without a valid token (401/403)."""


class TransferError(HstsyncError):
    """A transfer failed in a way worth retrying (network, 5xx, short body)."""


class TooSlow(TransferError):
    """The body came slower than ``[download] min_speed`` over ``min_speed_time``."""


class RetryLater(TransferError):
    """A transient refusal (429/503) whose server may have said when to come back."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CorruptFileError(TransferError):
    """The bytes arrived at the right size but are not the file: fetch it again."""


class Refused(HstsyncError):
    """A failure another attempt would not change: 404, other 4xx, an unwritable disk."""


class RangesRefused(HstsyncError):
    """A segment request was not answered with its range (200, a wrong 206, a changed
    file): the segmented transfer is given up for one whole-file transfer."""


class StoreError(HstsyncError):
    """The database cannot be opened or written."""


class DiskFullError(StoreError):
    """The database's filesystem is full: a run stops with exit 1 (not 2: nothing is
    misconfigured, and systemd may start the daemon again later)."""


class AlreadyRunningError(HstsyncError):
    """Another ``hstsync run`` works on the same database (exit 2)."""
