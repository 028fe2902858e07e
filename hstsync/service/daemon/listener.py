"""The status endpoint's listening socket, hardened against clients that never finish.

aiohttp bounds a request's size (``max_field_size``, ``max_headers``) and how long an
idle keep-alive connection is kept, but not how long a client may take to send its
first request's headers, nor how many connections are open at once. A few hundred
clients sending half a request each (slow loris) would otherwise hold a descriptor
each for an hour, until the daemon cannot open its request directory, its database or
a download. :class:`Guard` wraps aiohttp's protocol factory: each connection must send
its first headers within ``header_seconds`` and lives at most ``lifetime`` seconds
(a browser reconnects); beyond ``limit`` connections, a new one is closed as soon as
it is accepted, so no client waits in the backlog holding nothing but hope.

When the process is out of descriptors anyway, asyncio logs a traceback for every
failed ``accept`` (about one a second); :func:`quiet_accept_errors` makes that one
line a minute with a count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

#: seconds a client has to send its first request's headers
HEADER_SECONDS = 10.0
#: seconds a connection is served at most, keep-alive or not
LIFETIME_SECONDS = 60.0
#: connections served at once
MAX_CONNECTIONS = 64
#: the bytes of headers looked at for their end; aiohttp refuses longer ones itself
_HEAD_LIMIT = 64 * 1024
#: seconds between two lines about failed accepts
ACCEPT_ERROR_EVERY = 60.0


class Guard:
    """A protocol factory for ``loop.create_server`` around aiohttp's own."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        limit: int = MAX_CONNECTIONS,
        header_seconds: float = HEADER_SECONDS,
        lifetime: float = LIFETIME_SECONDS,
    ) -> None:
        self._factory = factory
        self.limit = limit
        self.header_seconds = header_seconds
        self.lifetime = lifetime
        #: connections being served now
        self.open = 0
        self._refused = 0
        self._said = 0.0

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self, self._factory())

    def refused(self) -> None:
        """One connection closed at once: over the limit. Said at most once a minute."""
        self._refused += 1
        now = time.monotonic()
        if now - self._said >= ACCEPT_ERROR_EVERY:
            log.warning(
                "status endpoint: %d connections open, the most it serves; %d more closed "
                "at once (a client that never finishes its requests?)",
                self.limit,
                self._refused,
            )
            self._said, self._refused = now, 0


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's handler, with a deadline for its first
    headers and for its whole life. Every protocol event is handed on unchanged."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._served = False
        #: the first request's bytes until its headers end; None once they have
        self._head: bytes | None = b""
        self._timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._guard.open >= self._guard.limit:
            self._guard.refused()
            transport.abort()  # the descriptor is free now; the client sees EOF
            return
        self._guard.open += 1
        self._served = True
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(self._guard.header_seconds, self._headers_due),
            loop.call_later(self._guard.lifetime, transport.abort),
        ]
        self._inner.connection_made(transport)

    def _headers_due(self) -> None:
        if self._transport is not None and self._head is not None:
            self._transport.abort()  # slow loris: its descriptor is worth more than it

    def data_received(self, data: bytes) -> None:
        if not self._served:
            return
        if self._head is not None:
            head = (self._head + data)[-_HEAD_LIMIT:]
            if b"\r\n\r\n" in head or b"\n\n" in head:
                self._head = None
                self._timers[0].cancel()
            else:
                self._head = head
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._served else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:
            timer.cancel()
        if not self._served:
            return
        self._served = False
        self._guard.open -= 1
        self._inner.connection_lost(exc)


@contextmanager
def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While the block runs, asyncio's "socket.accept() out of system resource" (a
    traceback about every second while descriptors run out) is one ERROR line a
    minute with how often it happened; every other report goes where it went."""
    previous = loop.get_exception_handler()
    state = {"said": 0.0, "count": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            state["count"] += 1
            now = time.monotonic()
            if now - state["said"] >= ACCEPT_ERROR_EVERY:
                error = context.get("exception")
                why = getattr(error, "strerror", None) or type(error).__name__
                log.error(
                    "status endpoint cannot accept connections: %s (%d times since the last "
                    "such line); the process is out of descriptors",
                    why,
                    state["count"],
                )
                state["said"], state["count"] = now, 0
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
