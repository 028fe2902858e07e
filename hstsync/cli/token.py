"""The MAST token commands: ``login``, ``logout`` and ``whoami``, and the advice on
renewing a token that fits where it came from.

They work without a configuration file (the real archive, :class:`MastConfig`'s
defaults). The token itself is never printed; :func:`lenient_token` is how read-only
commands (``plan``, ``whoami``) find one.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

from hstsync.archive import checked
from hstsync.cli.exits import EXIT_INCOMPLETE, EXIT_OK
from hstsync.config import TOKEN_PAGE, MastConfig, candidate_paths, load_config
from hstsync.errors import ConfigError


def lenient_token(mast: MastConfig) -> Any:
    """The token for a read-only command: a missing ``token_file`` (a systemd credential
    seen from outside its unit) is a warning and no token, not an error."""
    from hstsync.archive import find_token

    if mast.token_file is not None and not mast.token_file.exists():
        print(
            f"hstsync: warning: mast.token_file {mast.token_file} does not exist here "
            "(a systemd credential is only visible inside its unit); going on without "
            "that token",
            file=sys.stderr,
        )
        return find_token(None, server=mast.server)
    return find_token(mast.token_file, server=mast.server)


def mast_config(explicit: Path | None) -> MastConfig:
    """The [mast] table; without any configuration file, the real archive."""
    if explicit is None and not any(p.exists() for p in candidate_paths(None, os.environ)):
        return MastConfig()
    return load_config(explicit).mast


def _read_token() -> str:
    if sys.stdin.isatty():
        print(f"A MAST API token can be made at {TOKEN_PAGE}", file=sys.stderr)
        text = getpass.getpass("MAST API token: ")  # no echo
    else:
        text = sys.stdin.read(4096)  # scripts: `hstsync login < file`
    if not text.strip():
        raise ConfigError("no token given")
    return checked(text, "the token given")


def _session(mast: MastConfig, token: str | None) -> dict[str, Any]:
    from hstsync.archive import Resolver

    # [mast] timeout bounds the connect too: a server that never accepts is given up on
    # then, not after the kernel's own two minutes
    return Resolver(mast.server, token, timeout=mast.timeout).session_info()


def cmd_login(mast: MastConfig) -> int:
    from hstsync.archive import (
        is_anonymous,
        keyring_service,
        require_keyring,
        store_in_keyring,
        user_of,
    )

    require_keyring()  # before the token is typed, not after
    token = _read_token()
    info = _session(mast, token)
    if is_anonymous(info):
        print(
            f"hstsync: {mast.server} does not accept this token (mistyped, expired or "
            f"revoked?); make a new one at {TOKEN_PAGE}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    store_in_keyring(token, mast.server)
    print(
        f"MAST token accepted for {user_of(info)}; stored in the keyring "
        f"({keyring_service(mast.server)})"
    )
    shadow = _shadowing(mast)
    if shadow:
        print(f"note: {shadow} comes first, so hstsync uses that token, not this one")
    return EXIT_OK


def _shadowing(mast: MastConfig) -> str | None:
    """A token source that takes precedence over the keyring, if one is set."""
    if mast.token_file is not None:
        return f"mast.token_file ({mast.token_file})"
    if os.environ.get("MAST_API_TOKEN", "").strip():
        return "$MAST_API_TOKEN"
    return None


def renew_advice(source: str | None, mast: MastConfig) -> str:
    """What to do about the token from ``source`` (a :class:`Token`'s), or about having
    none: :func:`hstsync.archive.renewal_advice` with this configuration's file."""
    from hstsync.archive import renewal_advice

    return renewal_advice(source, token_file=mast.token_file)


def cmd_logout(mast: MastConfig) -> int:
    from hstsync.archive import keyring_service, remove_from_keyring

    if remove_from_keyring(mast.server):
        print(f"MAST token removed from the keyring ({keyring_service(mast.server)})")
    else:
        print("no MAST token was stored in the keyring")
    shadow = _shadowing(mast)
    if shadow:
        print(f"note: {shadow} still provides a token")
    return EXIT_OK


def cmd_whoami(mast: MastConfig) -> int:
    from hstsync.archive import is_anonymous, session_lines, session_warning

    token = lenient_token(mast)
    if token is None:
        print(
            "hstsync: no MAST token (looked in mast.token_file, $MAST_API_TOKEN and the "
            "keyring): public data only; for exclusive-access data " + renew_advice(None, mast),
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    info = _session(mast, token.value)
    print(f"token from: {token.describe()}")
    print(f"server: {mast.server}")
    for line in session_lines(info, token.value):
        print(line)
    if is_anonymous(info):
        print(
            f"hstsync: {mast.server} does not accept the token from {token.describe()} "
            f"(expired or revoked?); make a new one at {TOKEN_PAGE} and "
            + renew_advice(token.source, mast),
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    warning = session_warning(info)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK
