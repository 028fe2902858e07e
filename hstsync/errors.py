"""The error hierarchy.

Every failure a user can meet has a class here. The CLI turns them into one line
and an exit code; the daemon turns them into a state and a ``last_error``.
Messages are written for people and never carry a token or request headers.
"""


class HstsyncError(Exception):
    """Base of every error hstsync raises on purpose."""


class ConfigError(HstsyncError):
    """The configuration file is missing, unreadable or invalid (exit 2)."""


class ManifestError(HstsyncError):
    """A manifest cannot be read or is invalid; the request is set aside."""


class ResolveError(HstsyncError):
    """The archive could not resolve a request into products."""


class UnsafePathError(HstsyncError):
    """Catalogue data would place a file outside the mirror."""


class TransferError(HstsyncError):
    """A transfer failed in a way worth retrying (network, 5xx, short body)."""


class SizeMismatchError(HstsyncError):
    """The server's file size differs from the catalogue's: not retried blindly."""


class AuthRequiredError(HstsyncError):
    """The archive refused a product without a valid token (401/403)."""


class StoreError(HstsyncError):
    """The database cannot be opened or written."""


class DiskFullError(StoreError):
    """The database's filesystem is full: a run stops with exit 1 (not 2: nothing is
    misconfigured, and systemd may start the daemon again later)."""


class AlreadyRunningError(HstsyncError):
    """Another ``hstsync run`` works on the same database (exit 2)."""
