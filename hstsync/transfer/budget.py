"""The connection budget: how many HTTP requests may run at once, in total and per host.

Every GET of a file's body holds one token from :class:`ConnectionBudget` for as long
as its connection is busy, so the pool of ``[download] connections`` (and
``per_host``) is never exceeded, whatever mix of whole files and segments runs.

Two ways to take a token, and that is the scheduling policy:

- :meth:`ConnectionBudget.connection` waits its turn. A file's first connection takes
  its token this way: whole files fill the budget first.
- :meth:`ConnectionBudget.take_spares` takes spare tokens only when no whole file is
  waiting, and only this transfer's part of them: the spare tokens are dealt out one at
  a time, each to the candidate whose busiest connection would have the most bytes
  left to carry (it would finish last), and the asking transfer takes what fell to it,
  all at once (:func:`allot`). Taken together, a file's connections cut it into equal
  pieces; taken one by one, each would halve the largest piece, and seven connections
  would end with one piece twice the size of the six others.
  Candidates wait on :meth:`changed`, woken whenever a token comes back or the
  candidates change. :meth:`ConnectionBudget.try_take` takes a single spare token.

The deal also counts the tokens held by whole files in flight (when no other whole
file waits for them, they come back to the candidates): a file plans its pieces for
its part of those too, and the pieces without a connection yet wait for the next
token. Without that, the tokens of two small files that come back a latency after a
large file is cut would halve two of its pieces, and the others would end last.

A file large enough to be segmented is an *expected* candidate from the moment its
first request goes out (:meth:`ConnectionBudget.expect`) until its transfer registers
or turns out to be a single stream. Without that, the first of several large files to
be answered would take every spare token, the others' answers arriving milliseconds
later would find none, and the files would end far apart. An expected candidate holds spare tokens
back for at most ``grace`` seconds, so one slow answer cannot idle them for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import yarl


def host_of(url: str) -> str:
    """The key per-host limits count by: scheme, host and port, like aiohttp's pool."""
    return str(yarl.URL(url).origin())


#: how long an expected candidate holds spare tokens back (seconds)
EXPECT_GRACE = 0.5

#: the bytes a candidate's busiest connection would still carry if it had ``extra``
#: more connections; None when it could not use another beyond those
Share = Callable[[int], float | None]


def allot(shares: Sequence[Share], spare: int) -> list[int]:
    """How many of ``spare`` tokens each candidate gets: one at a time, each to the
    candidate whose busiest connection would carry the most bytes with the ones it has
    been given so far (the file that would otherwise finish last); none to a
    candidate that cannot use another. Ties go to the earlier candidate.

    Pure, so that the candidates can each compute their own part of one deal: every
    candidate that asks sees the same answer for the others.
    """
    given = [0] * len(shares)
    for _ in range(spare):
        best: int | None = None
        best_share = 0.0
        for index, share in enumerate(shares):
            value = share(given[index])
            if value is not None and (best is None or value > best_share):
                best, best_share = index, value
        if best is None:
            break
        given[best] += 1
    return given


@dataclass(eq=False, slots=True)
class Candidate:
    """A transfer that could use more connections. ``share(extra)`` says how much it
    would gain (the bytes its busiest connection still carries with ``extra`` more
    connections), or None when it cannot split that often; ``lanes()`` how many
    connections it holds or was promised. An expected one (its transfer not registered
    yet) counts until ``until``."""

    host: str
    share: Share = field(repr=False)
    until: float | None = None
    lanes: Callable[[], int] = field(default=lambda: 1, repr=False)

    def counts(self, now: float) -> bool:
        return self.until is None or now < self.until


class Expected:
    """A large file's first request in flight: a candidate until :meth:`close`."""

    def __init__(self, budget: ConnectionBudget, candidate: Candidate) -> None:
        self._budget = budget
        self._candidate: Candidate | None = candidate

    def close(self) -> None:
        """Its answer is here (and its transfer registered, if segmented). Idempotent."""
        if self._candidate is not None:
            self._budget._drop(self._candidate)
            self._candidate = None


class ConnectionBudget:
    def __init__(self, connections: int, per_host: int, grace: float = EXPECT_GRACE) -> None:
        self.connections = connections
        self.per_host = per_host
        self.grace = grace
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

    def spare(self, host: str) -> int:
        """How many tokens for ``host`` no waiting file could use."""
        if any(self._fits(h) for h, _ in self._waiters):
            return 0
        room = min(self.connections - self._used, self.per_host - self._used_by.get(host, 0))
        return max(room, 0)

    def take_spares(self, host: str, candidate: Candidate) -> tuple[int, int]:
        """Take ``candidate``'s part of the spare tokens for ``host`` (see :func:`allot`,
        dealt among every candidate for the host that counts now): how many it took, and
        how many it should plan pieces for (its part of the spare tokens and of those
        held by whole files, which come back to the candidates; never fewer than taken).
        """
        now = asyncio.get_running_loop().time()
        rivals = [c for c in self._candidates if c.host == host and c.counts(now)]
        if candidate not in rivals:
            return 0, 0
        spare = self.spare(host)
        if not spare:
            return 0, 0
        shares = [c.share for c in rivals]
        mine = allot(shares, spare)[rivals.index(candidate)]
        held = self._used_by.get(host, 0) - sum(c.lanes() for c in rivals)
        planned = allot(shares, spare + max(held, 0))[rivals.index(candidate)]
        for _ in range(mine):
            self._take(host)
        return mine, max(planned, mine)

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
        now = asyncio.get_running_loop().time()
        for candidate in self._candidates:
            if candidate.host != host or not candidate.counts(now):
                continue
            share = candidate.share(0)
            if share is not None and (best is None or share > best_share):
                best, best_share = candidate, share
        return best

    @contextlib.contextmanager
    def candidate(
        self, host: str, share: Share, lanes: Callable[[], int] = lambda: 1
    ) -> Iterator[Candidate]:
        entry = Candidate(host, share, lanes=lanes)
        self._candidates.append(entry)
        self.poke()
        try:
            yield entry
        finally:
            self._drop(entry)

    def expect(self, host: str, size: int) -> Expected:
        """A file of ``size`` bytes whose first request is going out and may be
        segmented: it is the candidate it would be (all its bytes on its one
        connection, and on more as they come) until closed, or for ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        entry = Candidate(host, lambda extra: size / (1 + extra), until=loop.time() + self.grace)
        self._candidates.append(entry)
        loop.call_later(self.grace, self.poke)  # when it stops counting, look again
        return Expected(self, entry)

    def _drop(self, entry: Candidate) -> None:
        self._candidates.remove(entry)
        self.poke()

    def poke(self) -> None:
        """Wake every candidate to look again (a token came back, the field changed)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        await self._changed.wait()


class Seat:
    """A lane's token of the connection budget, given back while the lane waits to retry."""

    def __init__(self, budget: ConnectionBudget, host: str, *, held: bool) -> None:
        self._budget = budget
        self._host = host
        self._held = held

    async def take(self) -> None:
        await self._budget.take(self._host)
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._budget.give_back(self._host)

    async def wait(self, sleep: Callable[[float], Awaitable[None]], seconds: float) -> None:
        self.release()
        await sleep(seconds)
        await self.take()
