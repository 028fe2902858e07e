"""An archive that never accepts a connection: ``whoami`` (and ``login``) give up after
``[mast] timeout`` and say so, rather than after the kernel's own connect timeout.

A real ``hstsync whoami`` process against a listening socket whose accept queue is
full, so that the kernel answers no new connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from helpers import run_hstsync


@contextlib.contextmanager
def never_accepting() -> Iterator[int]:
    """A port on 127.0.0.1 that takes no new connection: nothing accepts, and its
    backlog is full, so a connect waits until the client gives up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_whoami_against_a_server_that_never_accepts_ends_at_mast_timeout(tmp_path: Path):
    with never_accepting() as port:
        config = tmp_path / "config.toml"
        config.write_text(
            '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
            f'[mast]\nserver = "http://127.0.0.1:{port}"\ntimeout = 2\n'
        )
        env = dict(os.environ, HSTSYNC_NO_KEYRING="1", MAST_API_TOKEN="a" * 32)
        started = time.monotonic()
        code, _, err = await run_hstsync("whoami", "--config", str(config), env=env, timeout=60)
        took = time.monotonic() - started
    assert code == 1 and "Traceback" not in err
    assert took < 20, took  # [mast] timeout, not the kernel's two minutes
    assert "did not answer within 2 s" in err and "[mast] timeout" in err
