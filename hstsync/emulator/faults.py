"""Injected failures: what can go wrong between a client and MAST, on demand.

Owns :class:`Fault` (one failure to inject, how often, and for which file or
service) and :class:`Faults` (the live set the server consults on every request).
The server decides *how* each kind misbehaves; this module decides *whether* a
request gets a fault, and counts down ``times``. Thread-safe: a test thread may
add or clear faults while the server's loop consumes them.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    #: drop the connection after ``after`` body bytes of the response
    RESET = "reset"
    #: answer ``status`` (with ``Retry-After: retry_after`` when given)
    STATUS = "status"
    #: answer a ranged request with 200 and the whole body
    IGNORE_RANGE = "ignore_range"
    #: promise the full Content-Length, send ``after`` bytes, close cleanly
    SHORT_BODY = "short_body"
    #: serve a body of catalogue size + ``after`` bytes, consistently in the headers
    WRONG_SIZE = "wrong_size"
    #: send ``after`` bytes, then nothing for ``delay`` seconds, then the rest
    STALL = "stall"
    #: wait ``delay`` seconds before sending the headers
    SLOW_FIRST_BYTE = "slow_first_byte"
    #: flip one byte (XOR 0xFF) at file offset ``after``
    CORRUPT = "corrupt"
    #: the portal answers ``{"status": "EXECUTING"}`` instead of the result
    INVOKE_EXECUTING = "invoke_executing"
    #: the portal answers ``{"status": "ERROR", "msg": message}``
    INVOKE_ERROR = "invoke_error"
    #: the portal accepts the request and never answers (for ``delay`` seconds when
    #: given, else until the emulator closes): real product queries hang (astroquery
    #: issues 2473, 2497) and astroquery's portal calls have no socket timeout
    HANG = "hang"


class Endpoint(StrEnum):
    DOWNLOAD = "download"
    INVOKE = "invoke"
    #: the S3-like bucket of public files (``Emulator.cloud_url``)
    CLOUD = "cloud"


_INVOKE_KINDS = frozenset({FaultKind.INVOKE_EXECUTING, FaultKind.INVOKE_ERROR, FaultKind.HANG})
#: kinds that may also be aimed at the portal with ``endpoint="invoke"``
_EITHER_KINDS = frozenset({FaultKind.STATUS, FaultKind.SLOW_FIRST_BYTE})
#: kinds that shape a body, so a HEAD request neither triggers nor consumes them
BODY_KINDS = frozenset(
    {
        FaultKind.RESET,
        FaultKind.SHORT_BODY,
        FaultKind.STALL,
        FaultKind.CORRUPT,
        FaultKind.IGNORE_RANGE,
    }
)


@dataclass(slots=True)
class Fault:
    """One failure to inject.

    ``match`` is an fnmatch pattern on the productFilename (downloads, the bucket) or
    the service name (portal invokes). ``times=None`` means forever. ``endpoint`` aims
    STATUS and SLOW_FIRST_BYTE at ``"invoke"`` or ``"any"``; by default they hit
    downloads only, so a catch-all ``Fault(FaultKind.STATUS)`` does not also break
    resolution. ``endpoint="cloud"`` aims any download kind at the bucket instead of
    MAST's ``Download/file``; a STATUS or SLOW_FIRST_BYTE fault aimed at ``"any"`` hits
    the bucket too.

    ``skip`` lets that many matching requests through untouched before the fault
    starts to count: ``Fault(FaultKind.HANG, match="Mast.Caom.Products", skip=1)``
    answers the first product lookup and hangs the second; with ``skip=0, times=1``
    the first hangs and every later one is answered.
    """

    kind: FaultKind
    match: str = "*"
    times: int | None = 1
    after: int = 0
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    message: str = "Emulated MAST service error"
    endpoint: str | None = None
    skip: int = 0
    #: how many matching requests it has let through (``skip``) so far
    skipped: int = field(default=0, compare=False)
    #: how many requests this fault has hit so far
    hits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if self.endpoint not in (None, "download", "invoke", "cloud", "any"):
            raise ValueError(
                f"endpoint must be 'download', 'invoke', 'cloud' or 'any', not {self.endpoint!r}"
            )
        if self.endpoint == "cloud" and self.kind in _INVOKE_KINDS:
            raise ValueError(f"a {self.kind} fault cannot be aimed at the cloud bucket")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if self.skip < 0:
            raise ValueError("skip must be >= 0")

    def aims_at(self, endpoint: Endpoint) -> bool:
        if self.kind in _INVOKE_KINDS:
            return endpoint is Endpoint.INVOKE
        if self.endpoint == "cloud":
            return endpoint is Endpoint.CLOUD
        if self.kind in _EITHER_KINDS and self.endpoint is not None:
            return self.endpoint in ("any", endpoint.value)
        return endpoint is Endpoint.DOWNLOAD

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    """The live set of faults, consulted (and counted down) by the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, endpoint: Endpoint, name: str, *, head: bool = False) -> dict[FaultKind, Fault]:
        """The faults this request gets — at most one per kind — each counted as used.

        A HEAD request skips the body kinds and only *looks* at WRONG_SIZE and
        SLOW_FIRST_BYTE (so the GET that follows still gets them); a STATUS fault
        answers (and is used up by) a HEAD like any other request.
        """
        taken: dict[FaultKind, Fault] = {}
        with self._lock:
            for fault in self._faults:
                if fault.kind in taken or fault.spent or not fault.aims_at(endpoint):
                    continue
                if head and fault.kind in BODY_KINDS:
                    continue
                if not fnmatch.fnmatchcase(name, fault.match):
                    continue
                counts = not head or fault.kind is FaultKind.STATUS
                if fault.skipped < fault.skip:
                    if counts:
                        fault.skipped += 1
                    continue
                if counts:
                    fault.hits += 1
                taken[fault.kind] = fault
        return taken
