"""systemd's readiness protocol (``sd_notify``), without a dependency.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``; we send ``READY=1`` once
the daemon takes work and ``STOPPING=1`` when it starts shutting down. With
``WatchdogSec=`` it also passes ``$WATCHDOG_USEC``, and expects ``WATCHDOG=1`` at
least that often: the daemon sends it from its event loop every
:func:`watchdog_interval` (half of it, as sd_watchdog_enabled(3) advises), so a
loop that stops turning gets the service restarted. Outside systemd this does
nothing.
"""

from __future__ import annotations

import os
import socket


def sd_notify(*states: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None when systemd asks for none.

    Half of ``$WATCHDOG_USEC``; ignored when ``$WATCHDOG_PID`` names another process
    (the variables were inherited, not meant for us).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
