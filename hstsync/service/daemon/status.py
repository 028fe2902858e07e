"""The ``status --json`` document: requests and products as plain JSON values, and
whether a request is green (:func:`is_ok`). Its keys are in docs/design.md,
"The status document": more may be added, none removed.

Shared by ``hstsync status --json``, the daemon's status endpoint and its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hstsync.model import RequestState, relpath_or_none
from hstsync.store import ProductRow, RequestRow, RequestSummary

#: a request last fully mirrored longer ago than this many re-sync intervals is stale
STALE_AFTER_RESYNCS = 2


def is_ok(row: RequestRow, now: datetime, resync_every: float) -> bool:
    """Green only when true: the request's last finished pass left every product it
    lists in the mirror, with the archive's answer to its lookup (``mirrored_at`` is
    that pass's end), no later pass ended otherwise, and that was within
    :data:`STALE_AFTER_RESYNCS` re-sync intervals. A pass under way changes nothing;
    an invalid manifest, a failed re-sync, a product left failed or a daemon that
    stopped passing turn it off."""
    if row.state is RequestState.INVALID or row.mirrored_at is None:
        return False
    if row.pass_ended is not None and row.pass_ended > row.mirrored_at:
        return False  # the same ISO UTC format: text order is time order
    age = now - moment(row.mirrored_at)
    return age <= timedelta(seconds=STALE_AFTER_RESYNCS * resync_every)


def moment(stamp: str) -> datetime:
    """A stored time (ISO UTC, ``…Z``) as an aware datetime."""
    when = datetime.fromisoformat(stamp)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def request_document(
    summary: RequestSummary, *, now: datetime | None = None, resync_every: float | None = None
) -> dict[str, Any]:
    """One request of the document; with ``resync_every``, whether it is ``ok``."""
    row, counts = summary.request, summary.counts
    doc: dict[str, Any] = {
        "name": row.name,
        "state": str(row.state),
        "proposal_ids": list(row.proposal_ids),
        "collection": row.collection,
        # observations its last complete lookup found planned, not yet executed
        "planned_observations": row.planned,
        "products": {
            "total": counts.total,
            "done": counts.done,
            "failed": counts.failed,
            "pending": counts.pending,
            "auth_required": counts.auth_required,
            "withdrawn": counts.withdrawn,
        },
        "bytes": {"total": summary.bytes_total, "done": summary.bytes_done},
        "last_error": row.last_error,
        "updated": row.updated,
        "last_new_files": row.last_new_files,
        # when it was last fully mirrored, and its last pass (a start after the end: one
        # under way, or cut short)
        "last_mirrored": row.mirrored_at,
        "last_pass": {"started": row.pass_started, "ended": row.pass_ended},
        # a failed lookup's next try, and how many failed in a row
        "next_lookup": row.next_lookup,
        "lookup_failures": row.lookup_failures,
        # when its files were last verified, and what was found (same, changed, …)
        "last_verify": {"at": row.last_verify, "found": dict(row.verify_summary or {})},
    }
    if resync_every is not None:
        doc["ok"] = is_ok(row, now or datetime.now(UTC), resync_every)
    return doc


def product_document(row: ProductRow) -> dict[str, Any]:
    p = row.product
    return {
        "obs_id": p.obs_id,
        "filename": p.filename,
        "data_uri": p.data_uri,
        "path": str(path) if (path := relpath_or_none(p)) is not None else None,
        "size": p.size,
        # what the catalogue says, and why it differs when the server's size won
        "catalogue_size": row.catalogue_size,
        "size_note": row.size_note,
        "state": str(row.state),
        "bytes_done": row.bytes_done,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "updated": row.updated,
        # the file's SHA-256 as landed (or as a verify first found it), and when it
        # was last found to be the archive's
        "sha256": row.sha256,
        "verified": row.verified,
    }


def status_document(
    summaries: Sequence[RequestSummary],
    products: Sequence[ProductRow] | None = None,
    *,
    resync_every: float | None = None,
) -> dict[str, Any]:
    """The ``status --json`` object; with one request, its products too; with
    ``resync_every``, each request's ``ok``."""
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "requests": [request_document(s, now=now, resync_every=resync_every) for s in summaries]
    }
    if products is not None:
        doc["products"] = [product_document(p) for p in products]
    return doc
