"""How a request stands after a pass: its state and the ``last_error`` a person reads.

Pure: :func:`settle` turns the tally of a request's products (and this pass's failed
lookup, if any) into a :class:`Settlement`; ``service.sync.mirror`` writes it to the store.
:func:`exit_code` is the exit code over the states of a ``run --once``
(docs/design.md, "Exit codes").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hstsync.model import Counts, ProductState, RequestState, settled_request_state
from hstsync.store import ProductRow


@dataclass(frozen=True, slots=True)
class Settlement:
    state: RequestState
    last_error: str | None
    #: the pass resolved the request (its ``resolved_at`` is stamped)
    resolved: bool


def settle(
    counts: Counts,
    *,
    first_failure: str = "",
    lookup_error: str | None = None,
    empty: str | None = None,
    waiting: str | None = None,
) -> Settlement:
    """The request's state after a pass, from its products' states.

    ``first_failure`` is :func:`first_failure`'s `` (first: FILE: why)``. A request
    with no products is not done: nothing was mirrored, and ``empty`` (the lookup's
    words: which filter kept nothing, and what there is) says why.
    ``lookup_error``: this pass's lookup failed (the products are those of the last
    successful one). A request whose files are all done stays ``done``, saying "last
    re-sync failed: …"; one never looked up is ``incomplete`` with the reason. Either
    way the next lookup comes on the failed-lookup schedule, and the request is not
    stamped resolved. ``waiting``: why products this pass did not fetch wait for the
    next one (``max_bytes_per_pass``).
    """
    if lookup_error is not None:
        if counts.total and settled_request_state(counts) is RequestState.DONE:
            return Settlement(RequestState.DONE, f"last re-sync failed: {lookup_error}", False)
        return Settlement(RequestState.INCOMPLETE, lookup_error, False)
    if not counts.total:
        why = empty or "the archive lists no products for this request"
        return Settlement(RequestState.INCOMPLETE, why, True)
    parts = []
    if counts.failed:
        parts.append(f"{counts.failed} failed{first_failure}")
    if counts.auth_required:
        parts.append(f"{counts.auth_required} need a MAST token")
    if counts.pending:
        parts.append(f"{counts.pending} not fetched" + (f": {waiting}" if waiting else ""))
    if parts:
        return Settlement(RequestState.INCOMPLETE, ", ".join(parts), True)
    return Settlement(RequestState.DONE, None, True)


def first_failure(row: ProductRow | None) -> str:
    """`` (first: FILE: why)`` for the request's first failed product that says why
    (``Store.first_failed``): the request's error says why, not only how many."""
    if row is None or row.state is not ProductState.FAILED or not row.last_error:
        return ""
    return f" (first: {row.product.filename}: {row.last_error})"


def exit_code(states: Iterable[RequestState]) -> int:
    """0 when every request is done, 1 otherwise."""
    return 0 if all(state is RequestState.DONE for state in states) else 1
