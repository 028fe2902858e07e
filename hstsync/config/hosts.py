"""Where things may go: the hosts the MAST token may be sent to, and where the status
endpoint may listen.

Pure rules over host names and URLs, one definition each: :func:`token_allowed` (for
archive queries and downloads alike, redirects included), :func:`is_loopback` (plain
http and the status endpoint's warning both ask it), :func:`parse_listen` (the
``[status] listen`` address) and the default ``[mast] trusted_hosts``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from hstsync.errors import ConfigError

#: hosts the token may go to besides the configured server's (see trusted_hosts)
ARCHIVE_HOSTS = ("*.stsci.edu",)
#: where MAST users create tokens (the tutorial's "Logging In/Out"); here rather than in
#: archive/auth.py so the CLI's help text does not import the token machinery
TOKEN_PAGE = "https://auth.mast.stsci.edu/tokens"


def default_trusted_hosts(server: str) -> tuple[str, ...]:
    host = (urlsplit(server).hostname or "").lower()
    return tuple(dict.fromkeys((host, *ARCHIVE_HOSTS)) if host else ARCHIVE_HOSTS)


_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


def parse_listen(value: str, key: str) -> tuple[str, int]:
    """``"127.0.0.1:8470"``, ``"[::1]:8470"`` or ``"localhost:8470"`` → (host, port).

    The host is an IP address or ``localhost``: a name that resolves to several
    addresses would bind wherever the resolver says. Port 0 takes a free port (the
    daemon logs which).
    """
    example = 'like "127.0.0.1:8470" or "[::1]:8470"'
    match = _LISTEN.match(value)
    if not match:
        raise ConfigError(f"{key}: expected host:port {example}, got {value!r}")
    host = match.group("v6") or match.group("host")
    port = int(match.group("port"))
    if port > 65535:
        raise ConfigError(f"{key}: port must be 0-65535, got {port}")
    if host == "localhost":
        return host, port
    import ipaddress  # here, not at import: `hstsync status` never needs it

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{key}: the host must be an IP address or localhost, {example}, got {value!r}"
        ) from None
    if (address.version == 6) != bool(match.group("v6")):
        raise ConfigError(f"{key}: an IPv6 address goes in brackets, {example}, got {value!r}")
    return str(address), port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine. The one definition: the status endpoint's warning and where a token may
    go over plain http both use it."""
    name = host.strip().lower().rstrip(".")
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def token_allowed(url: str, trusted: Iterable[str]) -> bool:
    """Whether the MAST token may be sent with a request to ``url``: its host matches
    one of the ``trusted`` patterns (``[mast] trusted_hosts``), over https, or over
    plain http to this machine only. The one rule, for queries and downloads alike."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    if not host:
        return False
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        return False
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in trusted)
