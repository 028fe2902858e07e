"""One request's resolution as steps, decided here and carried out by a driver. Pure.

The walk goes over the request's observations a page at a time and its obsids a batch
at a time, and a batch whose product list failed in halves where the collection's
batches are halved (:meth:`~hstsync.archive.paging.Batcher.split`). :class:`Walk` says
what is to be asked of the archive next, and is told how it went:

- :class:`AskPage`: the driver answers with the page's
  :class:`~hstsync.archive.paging.ObservationPage`;
- :class:`AskProducts`: the driver asks for the batch's product list and takes its
  products; or it hands the :class:`~hstsync.errors.ArchiveUnavailable` the list
  failed with back to the walk, which asks for the halves next, or raises it where a
  batch is not halved.

Two drivers carry it out: :meth:`Resolver.resolve_batches
<hstsync.archive.resolve.Resolver.resolve_batches>`, blocking, for ``plan``; and the
pass's, each call in a worker thread under a deadline and retried
(``service.sync.lookup``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from hstsync.archive.paging import Batcher, Listing, ObservationPage
from hstsync.archive.selection import Sieve
from hstsync.errors import ArchiveUnavailable


@dataclass(frozen=True, slots=True)
class AskPage:
    """Ask for this page of the request's observations; :meth:`Walk.answer` with it."""

    page: int


@dataclass(frozen=True, slots=True)
class AskProducts:
    """Ask for these obsids' product list; :meth:`Walk.answer` once it is taken, or
    :meth:`Walk.fail` with the ArchiveUnavailable it failed with."""

    obsids: list[str]
    #: a failure is answered with halves, so the list is not worth asking again whole
    halved_on_failure: bool


Step = AskPage | AskProducts
_Steps = Generator[Step, ObservationPage | None, None]
#: told of a batch whose product list failed and is asked for in halves
OnHalve = Callable[[list[str], ArchiveUnavailable], None]


class Walk:
    """The steps of one resolution, one at a time: :meth:`next` is the next step (None
    at the end); :meth:`answer` and :meth:`fail` say how it went.

    ``batcher`` makes the batches and keeps the limit halving reached; ``sieve`` is
    told of each page's observations; ``on_halve`` of each batch asked for in halves.
    """

    def __init__(self, batcher: Batcher, sieve: Sieve | None, on_halve: OnHalve) -> None:
        self._batcher = batcher
        self._sieve = sieve
        self._on_halve = on_halve
        self._steps = self._walk()
        self._page: ObservationPage | None = None
        self._failure: ArchiveUnavailable | None = None

    def next(self) -> Step | None:
        """The next step; raises the failure of a batch that is not halved."""
        page, failure = self._page, self._failure
        self._page = self._failure = None
        try:
            return self._steps.throw(failure) if failure else self._steps.send(page)
        except StopIteration:
            return None

    def answer(self, page: ObservationPage | None = None) -> None:
        """The last step went well: an AskPage's page; an AskProducts' list was taken."""
        self._page = page

    def fail(self, exc: ArchiveUnavailable) -> None:
        """The last AskProducts' list failed with ``exc``."""
        self._failure = exc

    def _walk(self) -> _Steps:
        batcher, listing = self._batcher, Listing()  # never queries without end
        while not listing.done:
            found = yield AskPage(listing.page)
            assert found is not None, "an AskPage is answered with its ObservationPage"
            if self._sieve is not None:
                self._sieve.observed(found.rows, len(found.planned))
            batches = batcher.add(found.obsids, found.planned)
            listing.took(found, batcher.fresh)
            for batch in batches:
                yield from self._listed(batch)
        for batch in batcher.rest():
            yield from self._listed(batch)

    def _listed(self, batch: list[str]) -> _Steps:
        batcher = self._batcher
        if len(batch) > batcher.limit:  # a half made before the limit came down
            for run in batcher.fit(batch):
                yield from self._listed(run)
            return
        try:
            yield AskProducts(batch, halved_on_failure=batcher.sizes.halve and len(batch) > 1)
        except ArchiveUnavailable as exc:
            halves = batcher.split(batch)
            if halves is None:
                raise
            self._on_halve(batch, exc)
            for half in halves:
                yield from self._listed(half)
