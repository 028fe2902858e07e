"""Where things may go: the hosts the MAST token may be sent to, and where the status
endpoint may listen.

Pure rules over host names and URLs, one definition each: :func:`token_allowed` (for
archive queries and downloads alike, redirects included), :func:`is_loopback` (plain
http and the status endpoint's warning both ask it), :func:`parse_listen` (the
``[status] listen`` address), :func:`host_header_allowed` (which ``Host`` the status
endpoint answers) and the default ``[mast] trusted_hosts``.

A trusted host pattern is ``HOST`` or ``HOST:PORT`` (``[::1]:8080`` for IPv6), ``HOST``
with shell wildcards (``*.stsci.edu``). Without a port it stands for the URL scheme's
own port (443 for https): another port of a trusted host is another service, perhaps
another user's on a shared machine, and never gets the token.
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


#: the port a URL of each scheme uses when it names none
DEFAULT_PORTS = {"http": 80, "https": 443}


def default_trusted_hosts(server: str) -> tuple[str, ...]:
    """The configured server's host (with its port when it names one that is not its
    scheme's) and :data:`ARCHIVE_HOSTS`."""
    parts = urlsplit(server)
    host = (parts.hostname or "").lower()
    if not host:
        return ARCHIVE_HOSTS
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return tuple(dict.fromkeys((host, *ARCHIVE_HOSTS)))


def split_host_pattern(pattern: str) -> tuple[str, int | None]:
    """``HOST:PORT`` → (HOST, PORT); ``HOST`` → (HOST, None); IPv6 in brackets."""
    pattern = pattern.strip().lower()
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    host, colon, port = pattern.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return pattern, None


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
    """Whether the MAST token may be sent with a request to ``url``: its host and port
    match one of the ``trusted`` patterns (``[mast] trusted_hosts``; a pattern without
    a port means the scheme's own), over https, or over plain http to this machine
    only. The one rule, for queries and downloads alike."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if not host:
        return False
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        return False
    for pattern in trusted:
        wanted_host, wanted_port = split_host_pattern(pattern)
        wanted_port = wanted_port or DEFAULT_PORTS.get(parts.scheme)
        if port == wanted_port and fnmatch.fnmatchcase(host, wanted_host):
            return True
    return False


def host_header_allowed(header: str, listen_host: str) -> bool:
    """Whether a request whose ``Host`` header is ``header`` is addressed to the status
    endpoint listening on ``listen_host``: that host, ``localhost`` or a loopback
    address, or, when it listens on every address (``0.0.0.0``, ``::``), any IP
    address. Another name is refused: DNS rebinding (a page whose domain is re-pointed
    at this machine) needs a name, and the browser sends it."""
    host, _ = split_host_pattern(header)
    host = host.rstrip(".")
    if not host:
        return False
    listen = listen_host.strip("[]").lower()
    if host == listen or is_loopback(host):
        return True
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return ipaddress.ip_address(listen).is_unspecified
    except ValueError:
        return False
