"""What the archive says about a token, and what to tell people about it.

The archive's session info (``Observations.session_info``) is the only place that says
whose a token is, whether it is accepted and when it expires: :func:`standing_of`
reads it into a :class:`Standing`, :func:`session_lines` shows it without the token,
and :func:`session_warning` is what a long-running mirror tells its operator. The
advice in each message (:func:`renewal_advice`) names the source the token came from,
so that it can work where it is given. Asking the archive is the
:class:`~hstsync.archive.client.Client`'s (it holds the astroquery client); finding the
token is :mod:`hstsync.archive.auth`'s. Pure, but for :func:`renewal_advice` asking
whether a keyring is there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hstsync.archive import keyring_entry
from hstsync.config import TOKEN_PAGE

#: keys of the archive's session info that hold (part of) the token itself
SECRET_KEYS = frozenset({"token", "mast_token", "access_token"})


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
        keyring_usable = keyring_entry.keyring_usable()
    if keyring_usable:
        return "run `hstsync login`" + (" or set MAST_API_TOKEN" if source is None else "")
    return (
        "set MAST_API_TOKEN or point [mast] token_file at a file holding it "
        "(`hstsync login` needs a keyring, and there is none here)"
    )


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
