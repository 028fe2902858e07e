"""What a request needs from the mirror: the one planning function, pure.

:func:`plan` takes a request's products (with the state each is recorded in, if any)
and what the mirror holds for each (a :class:`Holding`, looked at by
:mod:`hstsync.service.sync.holdings`) and says, without any I/O, which files must be
fetched, which are already present, which can never be fetched and why, which wait
for a MAST token, how many bytes that is and whether the mirror has room for them.
``hstsync plan`` and the mirroring pass both use it, so what ``plan`` promises is
what a pass does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hstsync.errors import UnsafePathError
from hstsync.model import Product, ProductState, human_bytes

#: room kept free on the mirror's filesystem beyond what a request needs
HEADROOM = 64 * 1024 * 1024


class Action(enum.StrEnum):
    """What a pass does with one product."""

    #: bytes are missing: a transfer
    FETCH = "fetch"
    #: complete in the mirror but not recorded done (astroquery's own tree, an earlier
    #: copy, a new database): the pass records it without fetching a byte
    RECORD = "record"
    #: complete in the mirror and recorded done: nothing to do
    KEEP = "keep"
    #: can never be fetched; ``PlannedFile.refused`` says why
    REFUSE = "refuse"
    #: the archive refused it for want of a MAST token, and there still is none
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Holding:
    """What the mirror holds for one product, as looked at: observed, not judged."""

    #: size of the file under its final name, None when there is none
    whole: int | None = None
    #: bytes already fetched into its ``.part``
    part: int = 0
    #: why the file under its final name is not the product (the content check of a
    #: download failed); None when it passed or was not checked
    corrupt: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedFile:
    product: Product
    action: Action
    #: where it goes in the mirror; None when it is refused
    dest: Path | None = None
    #: bytes already on disk for it: the whole file, a ``.part``, or nothing
    on_disk: int = 0
    refused: str | None = None
    #: the file under its final name is an older version: fetched again, the old one kept
    replace: bool = False

    @property
    def present(self) -> bool:
        return self.action in (Action.RECORD, Action.KEEP)

    @property
    def missing(self) -> int:
        """Bytes still to fetch (0 when the size is unknown)."""
        if self.action is not Action.FETCH or self.product.size is None:
            return 0
        return max(self.product.size - self.on_disk, 0)


@dataclass(frozen=True, slots=True)
class Plan:
    files: tuple[PlannedFile, ...]
    #: free bytes on the mirror's filesystem
    free: int

    @property
    def total(self) -> int:
        return sum(f.product.size or 0 for f in self.files if f.refused is None)

    @property
    def present(self) -> int:
        return sum(1 for f in self.files if f.present)

    @property
    def to_fetch(self) -> int:
        return sum(1 for f in self.files if f.action is Action.FETCH)

    @property
    def missing_bytes(self) -> int:
        return sum(f.missing for f in self.files)

    @property
    def fits(self) -> bool:
        return room_for(self.missing_bytes, self.free)

    @property
    def transfers(self) -> tuple[PlannedFile, ...]:
        """What goes through the downloader: files to fetch, and files to record (the
        downloader finds them present and fetches nothing)."""
        return tuple(f for f in self.files if f.action in (Action.FETCH, Action.RECORD))

    @property
    def refusals(self) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if f.action is Action.REFUSE)

    def shortfall(self) -> str | None:
        """Why the mirror cannot hold what is missing, or None when it can."""
        return None if self.fits else shortfall(self.missing_bytes, self.free)


@dataclass(slots=True)
class Room:
    """A pass's room on the mirror, across the batches it plans one after another.

    ``free`` is measured once, before the pass fetches anything; each batch's missing
    bytes add up, and the pass stops taking new transfers at the first batch that
    would not fit: the test a whole list gets (:attr:`Plan.fits`), made batch by batch.
    """

    free: int
    missing_bytes: int = 0

    @property
    def fits(self) -> bool:
        # missing bytes only grow: once they do not fit, they never fit again
        return room_for(self.missing_bytes, self.free)

    def take(self, planned: Plan) -> bool:
        """Count ``planned``'s missing bytes; False once the mirror cannot hold them."""
        self.missing_bytes += planned.missing_bytes
        return self.fits

    def shortfall(self) -> str | None:
        return None if self.fits else shortfall(self.missing_bytes, self.free)


def shortfall(missing: int, free: int) -> str:
    return (
        f"not enough room: {human_bytes(missing)} to fetch, "
        f"{human_bytes(free)} free on the mirror's filesystem"
    )


def room_for(needed: int, free: int) -> bool:
    return needed == 0 or needed + HEADROOM <= free


def refusal(product: Product) -> str | None:
    """Why a catalogue row can never be fetched, or None."""
    if product.problem is not None:
        return product.problem
    try:
        product.relpath()
    except UnsafePathError as exc:
        return f"refused: {exc}"
    if not product.data_uri:
        return "the catalogue gives no dataURI for this file"
    return None


def plan(
    products: Sequence[Product],
    mirror: Path,
    holdings: Mapping[str, Holding],
    *,
    free: int,
    recorded: Mapping[str, ProductState] | None = None,
    have_token: bool = False,
    superseded: Collection[str] = (),
    sizes: Mapping[str, int] | None = None,
) -> Plan:
    """Decide, for each product, what a pass does with it.

    ``holdings`` and ``recorded`` are keyed by dataURI; a product missing from them has
    nothing on disk and no record (``hstsync plan`` records nothing). A file under its
    final name is complete when it has the catalogue's size (any size when the
    catalogue gives none) and did not fail its content check. A complete file recorded
    done is left alone; one not recorded is recorded; anything else is fetched (a done
    file that vanished or changed too: a mirror, not a log). A product the archive
    refused for want of a token waits until there is one. A product in ``superseded``
    has a newer version in the catalogue than the file in place: fetched again, the
    file in place to be kept (``replace``). ``sizes``: the size a server already sent
    for a product, where it differs from the catalogue's (a file another request
    fetched at that size is complete, not fetched again).
    """
    recorded = recorded or {}
    sizes = sizes or {}
    files: list[PlannedFile] = []
    for product in products:
        reason = refusal(product)
        if reason is not None:
            files.append(PlannedFile(product, Action.REFUSE, refused=reason))
            continue
        dest = mirror / product.relpath()
        held = holdings.get(product.data_uri, Holding())
        state = recorded.get(product.data_uri)
        size = sizes.get(product.data_uri, product.size)
        part = held.part if size is None else min(held.part, size)
        if state is ProductState.AUTH_REQUIRED and not have_token:
            files.append(PlannedFile(product, Action.WAIT, dest, part))
            continue
        complete = held.whole is not None and held.corrupt is None and size in (None, held.whole)
        if held.whole is not None and product.data_uri in superseded:
            # a new version in the catalogue (of the same size or not): the file in place
            # is kept in the attic when the new one lands
            files.append(PlannedFile(product, Action.FETCH, dest, part, replace=True))
        elif complete and held.whole is not None:
            action = Action.KEEP if state is ProductState.DONE else Action.RECORD
            if size != product.size:  # the server's size, as known: the plan's too
                product = dataclasses.replace(product, size=size)
            files.append(PlannedFile(product, action, dest, held.whole))
        else:
            files.append(PlannedFile(product, Action.FETCH, dest, part))
    return Plan(tuple(files), free)
