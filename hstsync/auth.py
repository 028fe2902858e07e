"""Where the MAST API token comes from, in SPEC's order.

``[mast] token_file`` (a systemd credential, say), then ``$MAST_API_TOKEN``, then
the keyring entry astroquery's ``Observations.login(store_token=True)`` writes.
The token is a secret: it is returned to the caller and never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hstsync.errors import ConfigError

log = logging.getLogger(__name__)

#: astroquery's keyring service and user names (astroquery/mast/auth.py)
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"


@dataclass(frozen=True, slots=True, repr=False)
class Token:
    value: str
    source: str  # "token_file", "environment" or "keyring"

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Token(source={self.source!r})"


def from_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mast.token_file: cannot read {path} ({exc.strerror})") from None
    token = text.strip()
    if not token:
        raise ConfigError(f"mast.token_file: {path} is empty")
    return token


def from_keyring() -> str | None:
    if os.environ.get("HSTSYNC_NO_KEYRING"):
        return None
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            value = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except KeyringError:
            return None
    except Exception:  # a broken backend must not stop a public mirror
        log.debug("keyring unavailable", exc_info=False)
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def find_token(token_file: Path | None, env: Mapping[str, str] | None = None) -> Token | None:
    """The first token found, or None for anonymous (public-only) access."""
    env = os.environ if env is None else env
    if token_file is not None:
        return Token(from_file(token_file), "token_file")
    if env.get("MAST_API_TOKEN", "").strip():
        return Token(env["MAST_API_TOKEN"].strip(), "environment")
    value = from_keyring()
    return Token(value, "keyring") if value else None
