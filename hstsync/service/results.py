"""Per-request results in the form astroquery's ``download_products`` returns.

A table with ``Local Path``, ``Status``, ``Message`` and ``URL`` columns, written as
ECSV (``astropy.table.Table.read`` loads it), so scripts written around astroquery's
manifest work on hstsync's too. Status uses astroquery's words: COMPLETE, ERROR,
SKIPPED.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from hstsync.files import atomic_write
from hstsync.model import ProductState, relpath_or_none
from hstsync.store import ProductRow

RESULTS_DIR = "results"


def results_path(mirror: Path, request: str) -> Path:
    return mirror / RESULTS_DIR / f"{request}.ecsv"


def _status(row: ProductRow) -> tuple[str, str | None]:
    if row.state is ProductState.DONE:
        return "COMPLETE", None
    if row.state is ProductState.FAILED:
        return "ERROR", row.last_error or "failed"
    if row.state is ProductState.AUTH_REQUIRED:
        return "ERROR", row.last_error or "needs a MAST token"
    return "SKIPPED", "not fetched yet"


def write_results(
    path: Path, rows: Sequence[ProductRow], mirror: Path, url_of: dict[str, str]
) -> Path:
    """Write the table atomically (tmp + rename) and return its path."""
    from astropy.table import Table

    local, status, message, url = [], [], [], []
    for row in rows:
        state, text = _status(row)
        rel = relpath_or_none(row.product)
        local.append("" if rel is None else str(mirror / rel))
        status.append(state)
        message.append(text or "None")
        url.append("None" if state == "COMPLETE" else url_of.get(row.product.data_uri, "None"))
    table = Table(
        [local, status, message, url],
        names=("Local Path", "Status", "Message", "URL"),
        dtype=(str, str, str, str),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ecsv = io.StringIO()
    table.write(ecsv, format="ascii.ecsv")
    atomic_write(path, ecsv.getvalue())
    return path
