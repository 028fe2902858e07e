"""The MAST API token: where it comes from, where it may go, where it is kept.

Sources, first found wins (docs/design.md, "The MAST token"): ``[mast] token_file``
(a systemd credential, say), then ``$MAST_API_TOKEN``, then the keyring entry astroquery's
``Observations.login(store_token=True)`` writes — ``hstsync login`` writes the same
entry, so either tool's login serves both.

The token is a secret: it is handed to the code that sends it and to nothing else.
No message built here or by callers contains it; :class:`Token`'s repr hides it;
:func:`check_transport` refuses to let it travel in clear text to another machine.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hstsync.config import DEFAULT_SERVER, TOKEN_PAGE, default_trusted_hosts, token_allowed
from hstsync.errors import AuthError, ConfigError, HstsyncError

log = logging.getLogger(__name__)

#: astroquery's keyring service and user names (astroquery/mast/auth.py): the entry of
#: the token for MAST itself (:func:`keyring_service`)
KEYRING_SERVICE = "astroquery:mast.stsci.edu.token"
KEYRING_USER = "masttoken"
#: keys of the archive's session info that hold (part of) the token itself
SECRET_KEYS = frozenset({"token", "mast_token", "access_token"})

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


def keyring_disabled() -> bool:
    return bool(os.environ.get("HSTSYNC_NO_KEYRING"))


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


# -- the archive's session info ------------------------------------------------------------


def session_lines(info: Mapping[str, Any], token: str | None) -> list[str]:
    """``Observations.session_info(verbose=True)``'s lines, without the token.

    Keys that hold the token (or part of it) are left out, and so is any value that
    contains the token: an archive echoing it back must not make us print it.
    """
    lines: list[str] = []
    for key, value in info.items():
        if key.lower() in SECRET_KEYS:
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:
            if sub is not None and str(sub).lower() in SECRET_KEYS:
                continue
            if token and token in str(item):
                continue
            lines.append(f"{key}.{sub}: {item}" if sub is not None else f"{key}: {item}")
    return lines


def user_of(info: Mapping[str, Any]) -> str:
    attrib = info.get("attrib")
    name = attrib.get("display_name") if isinstance(attrib, dict) else None
    return str(name or info.get("ezid") or info.get("eppn") or "an unnamed MAST user")


def is_anonymous(info: Mapping[str, Any]) -> bool:
    return bool(info.get("anon", True))


# -- the keyring entry ------------------------------------------------------------------------


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


#: warn this long before the archive says a token expires (tokens live 10 days unused,
#: 60 days at most: a week's notice leaves time to make a new one)
EXPIRY_WARNING_DAYS = 7
_EXPIRY_KEYS = ("expires", "expires_at", "expiration", "expiry")


def expiry_of(info: Mapping[str, Any]) -> datetime | None:
    """When the archive says the token expires, if its session info says so."""
    holders = [info]
    if isinstance(info.get("session"), dict):
        holders.append(info["session"])
    for holder in holders:
        for key in _EXPIRY_KEYS:
            value = holder.get(key)
            if not isinstance(value, str) or not value:
                continue
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def renewal_advice(
    source: str | None, *, token_file: Path | None = None, keyring_usable: bool | None = None
) -> str:
    """How to give hstsync a new token, for the source the current one came from
    (``Token.source``; None: there is none), as advice that can work where it is given:
    ``hstsync login`` only helps where the keyring is read, which a token file and
    ``$MAST_API_TOKEN`` come before, and only where a keyring exists."""
    if source == "token_file":
        where = str(token_file) if token_file else "the file [mast] token_file names"
        return f"write it into {where} (mast.token_file, which comes first)"
    if source == "environment":
        return (
            "put it in $MAST_API_TOKEN (it takes precedence over the keyring, so "
            "`hstsync login` alone would not help), or unset MAST_API_TOKEN and run "
            "`hstsync login`"
        )
    if keyring_usable is None:
        keyring_usable = _keyring_available()
    if keyring_usable:
        return "run `hstsync login`" + (" or set MAST_API_TOKEN" if source is None else "")
    return (
        "set MAST_API_TOKEN or point [mast] token_file at a file holding it "
        "(`hstsync login` needs a keyring, and there is none here)"
    )


def _keyring_available() -> bool:
    try:
        require_keyring()
    except HstsyncError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Standing:
    """How the archive judges a token, from its session info (:func:`standing_of`)."""

    #: "accepted", "expiring" (within :data:`EXPIRY_WARNING_DAYS`), "expired" or
    #: "refused" (the archive takes it for nobody)
    state: str
    #: when the archive says it expires, where it says so
    expires: datetime | None
    #: for people: whose it is, or what is wrong and what to do
    message: str

    @property
    def worrying(self) -> bool:
        return self.state != "accepted"


def standing_of(
    info: Mapping[str, Any], now: datetime | None = None, *, source: str | None = "keyring"
) -> Standing:
    """The token's standing from the archive's session info ``info``.

    ``source`` is where the token came from (``Token.source``): the advice names it.
    MAST tokens expire after 10 days unused and 60 days at most; the archive's answer
    is the only place that can say when, so the warning comes where it says so."""
    if is_anonymous(info):
        return Standing(
            "refused",
            None,
            "the archive does not accept the MAST token (expired or revoked?): "
            f"exclusive-access files wait as auth_required; make a new token at {TOKEN_PAGE} "
            f"and {renewal_advice(source)}",
        )
    expires = expiry_of(info)
    accepted = Standing("accepted", expires, f"accepted for {user_of(info)}")
    if expires is None:
        return accepted
    left = expires - (now or datetime.now(UTC))
    if left > timedelta(days=EXPIRY_WARNING_DAYS):
        return accepted
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    if left.total_seconds() <= 0:
        return Standing(
            "expired",
            expires,
            f"the MAST token of {user_of(info)} expired at {when}; {renewal_advice(source)}",
        )
    return Standing(
        "expiring",
        expires,
        f"the MAST token of {user_of(info)} expires at {when}: make a new one at "
        f"{TOKEN_PAGE} and {renewal_advice(source)}",
    )


def session_warning(
    info: Mapping[str, Any], now: datetime | None = None, *, source: str | None = "keyring"
) -> str | None:
    """What a long-running mirror should tell its operator about its token, if anything.

    ``source`` is where the token came from (``Token.source``): the advice names it."""
    standing = standing_of(info, now, source=source)
    return standing.message if standing.worrying else None


def auth_required_message(
    proposals: Sequence[str], *, have_token: bool, refusal: str, source: str | None = None
) -> str:
    """The ``last_error`` of a product the archive refused: what happened, what to do.

    ``source`` is where the refused token came from (``Token.source``), when known."""
    ids = ", ".join(proposals) or "this program"
    status = re.search(r"HTTP \d+", refusal)
    code = f" ({status.group(0)})" if status else ""
    if have_token:
        return (
            f"the archive refused the MAST token{code}: it needs a token with access to "
            f"proposal {ids}, and this one has none or has expired; "
            + (
                renewal_advice(source)
                if source
                else "run `hstsync login` with a new token or set MAST_API_TOKEN"
            )
        )
    return f"needs a MAST token with access to proposal {ids}{code}: {renewal_advice(None)}"
