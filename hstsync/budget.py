"""The connection budget: how many HTTP requests may run at once, in total and per host.

Every GET of a file's body holds one token from :class:`ConnectionBudget` for as long
as its connection is busy, so the pool of ``[download] connections`` (and
``per_host``) is never exceeded, whatever mix of whole files and segments runs.

Two ways to take a token, and that is the scheduling policy:

- :meth:`ConnectionBudget.connection` waits its turn. A file's first connection takes
  its token this way: whole files fill the budget first.
- :meth:`ConnectionBudget.try_take` takes a spare token only when no whole file is
  waiting and the asking transfer is the best use of it: among the segmented transfers
  registered as candidates, the one whose connections each have the most bytes left to
  carry (it would finish last). Candidates wait on :meth:`changed`, woken whenever a
  token comes back or the candidates change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import yarl


def host_of(url: str) -> str:
    """The key per-host limits count by: scheme, host and port, like aiohttp's pool."""
    return str(yarl.URL(url).origin())


@dataclass(eq=False, slots=True)
class Candidate:
    """A transfer that could use more connections. ``share()`` says how much it
    would gain (bytes per connection still to carry), or None when it cannot split."""

    host: str
    share: Callable[[], float | None] = field(repr=False)


class ConnectionBudget:
    def __init__(self, connections: int, per_host: int) -> None:
        self.connections = connections
        self.per_host = per_host
        self._used = 0
        self._used_by: dict[str, int] = {}
        self._waiters: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._candidates: list[Candidate] = []
        self._changed = asyncio.Event()

    @property
    def in_use(self) -> int:
        return self._used

    def _fits(self, host: str) -> bool:
        return self._used < self.connections and self._used_by.get(host, 0) < self.per_host

    def _take(self, host: str) -> None:
        self._used += 1
        self._used_by[host] = self._used_by.get(host, 0) + 1

    async def take(self, host: str) -> None:
        """Wait for a token for ``host``, in turn after every earlier waiter that fits."""
        if self._fits(host) and not self._waiters:
            self._take(host)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((host, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give_back(host)  # granted just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove((host, future))
            raise

    def try_take(self, host: str, candidate: Candidate | None = None) -> bool:
        """Take a spare token now, or say no. A spare is one no waiting file could use;
        with ``candidate``, only if it is the best candidate for this host."""
        if not self._fits(host) or any(self._fits(h) for h, _ in self._waiters):
            return False
        if candidate is not None and self.best(host) is not candidate:
            return False
        self._take(host)
        return True

    def give_back(self, host: str) -> None:
        self._used -= 1
        left = self._used_by[host] - 1
        if left:
            self._used_by[host] = left
        else:
            del self._used_by[host]
        for index, (waiting_host, future) in enumerate(self._waiters):
            if future.cancelled():
                continue
            if self._fits(waiting_host):
                del self._waiters[index]
                self._take(waiting_host)
                future.set_result(None)
                break
        self._waiters = deque((h, f) for h, f in self._waiters if not f.cancelled())
        self.poke()

    @contextlib.asynccontextmanager
    async def connection(self, host: str) -> AsyncIterator[None]:
        await self.take(host)
        try:
            yield
        finally:
            self.give_back(host)

    # -- candidates for spare connections ------------------------------------------------

    def best(self, host: str) -> Candidate | None:
        best: Candidate | None = None
        best_share = 0.0
        for candidate in self._candidates:
            if candidate.host != host:
                continue
            share = candidate.share()
            if share is not None and (best is None or share > best_share):
                best, best_share = candidate, share
        return best

    @contextlib.contextmanager
    def candidate(self, host: str, share: Callable[[], float | None]) -> Iterator[Candidate]:
        entry = Candidate(host, share)
        self._candidates.append(entry)
        self.poke()
        try:
            yield entry
        finally:
            self._candidates.remove(entry)
            self.poke()

    def poke(self) -> None:
        """Wake every candidate to look again (a token came back, the field changed)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        await self._changed.wait()
