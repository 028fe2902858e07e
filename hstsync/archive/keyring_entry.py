"""The MAST token's keyring entry: its name, whether a keyring is there, writing and
removing it.

astroquery's ``Observations.login(store_token=True)`` keeps the token for MAST in one
entry, and ``hstsync login`` writes the same one, so either tool's login serves both;
any other server gets an entry of its own (:func:`keyring_service`). Three callers need
the entry and none of them needs the others: the token's sources read it
(:func:`hstsync.archive.auth.find_token`), the token commands write and remove it, and
the advice on renewing a token asks whether a keyring is there at all
(:func:`hstsync.archive.standing.renewal_advice`). ``keyring`` itself is imported only
when an entry is touched.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from hstsync.config import DEFAULT_SERVER
from hstsync.errors import AuthError, ConfigError, HstsyncError

#: astroquery's keyring service and user names (astroquery/mast/auth.py): the entry of
#: the token for MAST itself (:func:`keyring_service`)
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"


def keyring_service(server: str = DEFAULT_SERVER) -> str:
    """The keyring entry (service name) of the token for ``server``.

    MAST's is astroquery's own entry, so either tool's login serves both. Any other
    server (the bundled emulator, a test archive) has an entry of its own, named for
    its host and port: a login there never replaces the token astroquery and MAST use.
    """
    parts = urlsplit(server)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host == "mast.stsci.edu" and parts.port in (None, 443):
        return KEYRING_SERVICE
    return f"hstsync:{host if parts.port is None else f'{host}:{parts.port}'}.token"


def keyring_disabled() -> bool:
    """Whether ``$HSTSYNC_NO_KEYRING`` keeps the keyring out (a service, which takes
    its token from a file)."""
    return bool(os.environ.get("HSTSYNC_NO_KEYRING"))


def require_keyring() -> Any:
    """The keyring module, once a real backend is known to be there (ConfigError if not)."""
    if keyring_disabled():
        raise ConfigError(
            "the keyring is disabled (HSTSYNC_NO_KEYRING is set); give the token with "
            "MAST_API_TOKEN or [mast] token_file instead"
        )
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise ConfigError(
            "no keyring backend is available here (a server without a desktop session?); "
            "give the token with MAST_API_TOKEN or [mast] token_file instead"
        )
    return keyring


def store_in_keyring(token: str, server: str = DEFAULT_SERVER) -> None:
    """Write the keyring entry of ``server``'s token: for MAST, astroquery's own
    (``Observations.login(store_token=True)``'s); see :func:`keyring_service`."""
    keyring = require_keyring()
    from keyring.errors import KeyringError

    try:
        keyring.set_password(keyring_service(server), KEYRING_USER, token)
    except KeyringError as exc:
        raise AuthError(f"the keyring refused to store the token ({type(exc).__name__})") from None


def remove_from_keyring(server: str = DEFAULT_SERVER) -> bool:
    """Delete the entry of ``server``'s token; False when there was none."""
    keyring = require_keyring()
    from keyring.errors import KeyringError, PasswordDeleteError

    service = keyring_service(server)
    try:
        if keyring.get_password(service, KEYRING_USER) is None:
            return False
        keyring.delete_password(service, KEYRING_USER)
    except PasswordDeleteError:
        return False
    except KeyringError as exc:
        raise AuthError(f"the keyring refused to remove the token ({type(exc).__name__})") from None
    return True


def keyring_usable() -> bool:
    """Whether a keyring is there to keep a token (:func:`require_keyring` succeeds)."""
    try:
        require_keyring()
    except HstsyncError:
        return False
    return True
