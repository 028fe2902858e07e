"""SPEC's ``status --json`` document: requests and products as plain JSON values.

Shared by ``hstsync status --json`` and the daemon's status endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hstsync.model import relpath_or_none
from hstsync.store import ProductRow, RequestSummary


def request_document(summary: RequestSummary) -> dict[str, Any]:
    row, counts = summary.request, summary.counts
    return {
        "name": row.name,
        "state": str(row.state),
        "proposal_ids": list(row.proposal_ids),
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
    }


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
    }


def status_document(
    summaries: Sequence[RequestSummary], products: Sequence[ProductRow] | None = None
) -> dict[str, Any]:
    """SPEC's ``status --json`` object; with one request, its products too."""
    doc: dict[str, Any] = {"requests": [request_document(s) for s in summaries]}
    if products is not None:
        doc["products"] = [product_document(p) for p in products]
    return doc
