"""The MAST API token: where it comes from and where it may go.

Sources, first found wins (docs/design.md, "The MAST token"): ``[mast] token_file``
(a systemd credential, say), then ``$MAST_API_TOKEN``, then the keyring entry astroquery's
``Observations.login(store_token=True)`` writes — ``hstsync login`` writes the same
entry, so either tool's login serves both (:mod:`hstsync.archive.keyring_entry`).

The token is a secret: it is handed to the code that sends it and to nothing else.
No message built here or by callers contains it; :class:`Token`'s repr hides it;
:func:`check_transport` refuses to let it travel in clear text to another machine.

What the archive says of a token is :mod:`hstsync.archive.standing`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hstsync.archive.keyring_entry import (
    KEYRING_SERVICE,
    KEYRING_USER,
    keyring_disabled,
    keyring_service,
)
from hstsync.config import DEFAULT_SERVER, default_trusted_hosts, token_allowed
from hstsync.errors import ConfigError

__all__ = [
    "Token",
    "check_transport",
    "checked",
    "find_token",
    "from_file",
    "from_keyring",
    "token_domain",
]

log = logging.getLogger(__name__)

# Printable ASCII without spaces: anything else would be a header-injection risk, and
# aiohttp's complaint about a bad header value would quote the value in a traceback.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True, repr=False)
class Token:
    value: str
    source: str  # "token_file", "environment" or "keyring"
    #: the keyring entry it came from (:func:`keyring_service`), for a keyring token
    entry: str = KEYRING_SERVICE

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Token(source={self.source!r})"

    def describe(self) -> str:
        """Where the token came from, for people: never the token itself."""
        return {
            "token_file": "[mast] token_file",
            "environment": "$MAST_API_TOKEN",
            "keyring": f"the keyring ({self.entry})",
        }.get(self.source, self.source)


def checked(token: str, where: str) -> str:
    """``token`` stripped, or ConfigError if it cannot be a MAST token."""
    value = token.strip()
    if not value:
        raise ConfigError(f"{where}: the MAST token is empty")
    if not _TOKEN_CHARS.fullmatch(value):
        raise ConfigError(
            f"{where}: the MAST token contains spaces, line breaks or other characters "
            "a token never has (is it the whole file of something else?)"
        )
    return value


def from_file(path: Path) -> str:
    _warn_if_readable_by_all(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mast.token_file: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"mast.token_file: {path} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"mast.token_file: {path} is empty")
    return checked(text, f"mast.token_file {path}")


def _warn_if_readable_by_all(path: Path) -> None:
    """A token every user of the machine can read is said so (as ssh does of a key),
    once per file and mode; it is still used: refusing would stop a mirror that ran."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it says why
    if mode & 0o004 and (path, mode) not in _WARNED:
        _WARNED.add((path, mode))
        log.warning(
            "mast.token_file %s is readable by every user of this machine (mode %04o); "
            "`chmod 600 %s` (or hand it over as a systemd credential)",
            path,
            mode & 0o7777,
            path,
        )


_WARNED: set[tuple[Path, int]] = set()


def from_keyring(server: str = DEFAULT_SERVER) -> str | None:
    """The token the keyring holds for ``server`` (:func:`keyring_service`), if any."""
    if keyring_disabled():
        return None
    service = keyring_service(server)
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            value = keyring.get_password(service, KEYRING_USER)
        except KeyringError:
            return None
    except Exception:  # a broken backend must not stop a public mirror
        log.debug("keyring unavailable", exc_info=False)
        return None
    if not isinstance(value, str) or not value.strip():
        return None
    return checked(value, f"the keyring entry {service}")


def find_token(
    token_file: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    server: str = DEFAULT_SERVER,
) -> Token | None:
    """The first token found for ``server``, or None for anonymous (public-only) access."""
    env = os.environ if env is None else env
    if token_file is not None:
        return Token(from_file(token_file), "token_file")
    if env.get("MAST_API_TOKEN", "").strip():
        return Token(checked(env["MAST_API_TOKEN"], "$MAST_API_TOKEN"), "environment")
    value = from_keyring(server)
    return Token(value, "keyring", keyring_service(server)) if value else None


# -- where the token may go -------------------------------------------------------------


def check_transport(server: str) -> None:
    """Refuse to send a token in clear text to another machine.

    Call it whenever a token is about to be used with ``server``. Loopback
    ``http://`` stays allowed: the emulator, an SSH tunnel, a local proxy.
    """
    parts = urlsplit(server)
    # the rule of config.token_allowed, for the server's own host and port
    if token_allowed(server, default_trusted_hosts(server)[:1]):
        return
    raise ConfigError(
        f"mast.server is {parts.scheme}://{parts.hostname}: hstsync sends a MAST token only "
        "over https (or to this machine); use an https:// server, or mirror public data "
        "without a token (hstsync logout; unset MAST_API_TOKEN; drop mast.token_file)"
    )


def token_domain(server: str) -> str:
    """The cookie domain that matches ``server``'s host and no other.

    The standard library's cookie jar calls a host without a dot ``HOST.local``
    (``localhost`` → ``localhost.local``), so scoping a cookie to the bare name
    would silently keep it from being sent at all.
    """
    # http.cookiejar.eff_request_host, which typeshed does not list
    host = re.sub(r":\d+$", "", urlsplit(server).netloc.rpartition("@")[2]).lower()
    return host if "." in host else host + ".local"
