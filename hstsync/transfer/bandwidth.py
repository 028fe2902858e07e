"""The bandwidth all downloads of a process share: ``[download] bwlimit`` by time of day.

:class:`Bandwidth` is a token bucket over every body byte received: a transfer spends
its chunk's bytes before taking the next (:meth:`Bandwidth.spend`), waiting when the
bucket is empty. The rate comes from the timetable at the local time of each spend, so
a limit that ends at 19:00 lifts within a chunk's time. The bucket holds at most one
second of the rate: a burst after a pause never exceeds it by more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hstsync.config import Timetable


def _local_minute() -> int:
    now = time.localtime()
    return now.tm_hour * 60 + now.tm_min


class Bandwidth:
    """Body bytes per second, for every transfer of a process together."""

    def __init__(
        self,
        timetable: Timetable,
        *,
        minute: Callable[[], int] = _local_minute,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._timetable = timetable
        self._minute = minute
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()

    @property
    def limited(self) -> bool:
        return bool(self._timetable.changes)

    def rate(self) -> float | None:
        """The limit now, bytes/s (None: none)."""
        return self._timetable.rate_at(self._minute())

    async def spend(self, n: int) -> None:
        """Take ``n`` bytes from the bucket, waiting until the rate allows them."""
        rate = self.rate() if self._timetable.changes else None
        now = self._clock()
        if rate is None:
            self._tokens, self._last = 0.0, now
            return
        self._tokens = min(self._tokens + (now - self._last) * rate, rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:
            await self._sleep(-self._tokens / rate)
