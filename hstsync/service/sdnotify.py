"""systemd's readiness protocol (``sd_notify``), without a dependency.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``; we send ``READY=1`` once
the daemon takes work and ``STOPPING=1`` when it starts shutting down. Outside
systemd this does nothing.
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
