"""How a request's observations are listed page by page, and its obsids batched for
product lists. Pure: the archive calls are ``observations``' and ``products``'.

Observations are asked for a page of :data:`OBS_PAGE` at a time (astroquery holds every
page of an answer at once); :class:`Listing` says when the pages end, believing the
archive's paging only as far as it holds together. :class:`Batcher` turns pages of
obsids into product-list batches: a small first one (:data:`FIRST_BATCH`), so that
transfers start after one quick list, then :data:`OBSID_BATCH` (MAST advises small
chunks of obsids). JWST's batches are smaller still, and one that fails is asked for
again in halves (:func:`batch_sizes`): whole-proposal JWST lists time out or hang.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hstsync.archive.collection import JWST
from hstsync.archive.seen import Seen

#: obsids per Mast.Caom.Products call, so a program of thousands of observations
#: does not become one enormous form body.
OBSID_BATCH = 500

#: obsids of the first Mast.Caom.Products call: a quick first list, so transfers start
FIRST_BATCH = 50

#: JWST: obsids per product-list call, and of the first one. An exposure lists its
#: level-3 files and its visit's guide-star files again, a level-3 observation every
#: member's files: many more rows an obsid than HST's
JWST_OBSID_BATCH = 100
JWST_FIRST_BATCH = 10

#: observations per page of Mast.Caom.Filtered (astroquery's default is 50,000 a page,
#: every page held at once)
OBS_PAGE = 2000


@dataclass(frozen=True, slots=True)
class ObservationPage:
    """One page of a request's observations, as the archive answered it."""

    obsids: list[str]
    #: rows on the page (a row without an obsid counts: the page's fullness is the
    #: archive's, not ours)
    rows: int
    #: the page size the archive says it used (its own cap can be below the one asked)
    page_size: int
    #: how many pages the archive says the list has; None when it does not say
    pages: int | None
    #: the obsids of ``obsids`` that are planned, not yet executed (calib_level -1):
    #: they have no files, and no product list is asked for them
    planned: frozenset[str] = frozenset()


class Listing:
    """When the pages of a request's observations end. Pure.

    An archive's paging is believed only as far as it holds together: a short page is
    the last; a page that brings no observation an earlier one did not (an archive that
    ignores ``page`` answers the first page again and again) ends the list; and no more
    pages are asked for than the first answer says there are, plus one (the list may
    grow between two requests). A pass never sends the archive queries without end.
    """

    def __init__(self) -> None:
        #: the page to ask for next
        self.page = 1
        #: no more pages
        self.done = False
        self._last: int | None = None

    def took(self, found: ObservationPage, fresh: int) -> None:
        """Page :attr:`page` answered ``found``, ``fresh`` of its obsids new."""
        if self.page == 1 and found.pages is not None:
            self._last = found.pages + 1
        short = found.rows < found.page_size
        if short or not fresh or (self._last is not None and self.page >= self._last):
            self.done = True
        self.page += 1


def paging_of(response: Any) -> dict[str, Any] | None:
    """The ``paging`` block of a portal answer (a requests ``Response``), if any."""
    try:
        paging = response.json().get("paging")
    except Exception:  # not JSON, or not an object: astroquery says what it makes of it
        return None
    return paging if isinstance(paging, dict) else None


def page_count(value: Any) -> int | None:
    """A positive whole number the archive sent, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return int(value) if value >= 1 and value == int(value) else None


@dataclass(frozen=True, slots=True)
class BatchSizes:
    """How many obsids a product list asks for at once."""

    #: the first batch: small, so that transfers start after one quick list
    first: int
    #: every later one, at most
    size: int
    #: a failed batch of several obsids is asked for again in halves, each alone,
    #: and no later batch is bigger than a half (:meth:`Batcher.split`)
    halve: bool = False


def batch_sizes(collection: str) -> BatchSizes:
    """The batches of a collection's product lists. HST's are retried whole when they
    fail; JWST's are smaller and halved when they fail."""
    if collection == JWST:
        return BatchSizes(min(JWST_FIRST_BATCH, JWST_OBSID_BATCH), JWST_OBSID_BATCH, halve=True)
    return BatchSizes(min(FIRST_BATCH, OBSID_BATCH), OBSID_BATCH)


class Batcher:
    """Pages of obsids → batches for the product lists. Pure.

    The first batch is small (``sizes.first``), so that transfers start after one
    quick product list while the next, full ones (``sizes.size``) are asked for.
    An obsid on two pages (the archive's list moved between two page requests) is
    asked for once; a planned observation's never (it has no files yet). ``limit``
    caps every batch from the start (a size learned in an earlier resolution).
    """

    def __init__(self, sizes: BatchSizes | None = None, *, limit: int | None = None) -> None:
        self.sizes = sizes if sizes is not None else batch_sizes("HST")
        #: the most obsids a batch holds from now on (:meth:`split` lowers it)
        self.limit = max(1, min(limit or self.sizes.size, self.sizes.size))
        self._seen = Seen()
        self._pending: list[str] = []
        self._made = 0
        #: how many obsids of the last page taken were new
        self.fresh = 0

    def _size(self) -> int:
        return min(self.sizes.first if self._made == 0 else self.sizes.size, self.limit)

    def add(self, obsids: Iterable[str], planned: frozenset[str] = frozenset()) -> list[list[str]]:
        """Take one page (``planned``: its obsids that have no files yet); the batches it
        completes."""
        self.fresh = 0
        for obsid in obsids:
            if self._seen.add(obsid):
                self.fresh += 1
                if obsid not in planned:
                    self._pending.append(obsid)
        made: list[list[str]] = []
        while len(self._pending) >= (size := self._size()):
            made.append(self._pending[:size])
            self._pending = self._pending[size:]
            self._made += 1
        return made

    def rest(self) -> list[list[str]]:
        """After the last page: what is left, in batches."""
        made = self.add(())
        if self._pending:
            made.append(self._pending)
            self._pending = []
            self._made += 1
        return made

    def fit(self, batch: list[str]) -> list[list[str]]:
        """``batch`` in runs of at most :attr:`limit` obsids (a half made before the
        limit came down further)."""
        return [batch[i : i + self.limit] for i in range(0, len(batch), self.limit)]

    def split(self, batch: list[str]) -> list[list[str]] | None:
        """A batch whose product list failed: its halves, to be asked for one after the
        other, and no later batch bigger than a half. None when the collection's
        batches are not halved or the batch is one obsid: it is retried as it is."""
        if not self.sizes.halve or len(batch) < 2:
            return None
        half = (len(batch) + 1) // 2
        self.limit = min(self.limit, half)
        return [batch[:half], batch[half:]]
