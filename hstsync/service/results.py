"""Per-request results in the form astroquery's ``download_products`` returns.

A table with ``Local Path``, ``Status``, ``Message`` and ``URL`` columns, written as
ECSV (``astropy.table.Table.read`` loads it), so scripts written around astroquery's
manifest work on hstsync's too. Status uses astroquery's words: COMPLETE, ERROR,
SKIPPED.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    path: Path,
    pages: Iterable[Sequence[ProductRow]],
    mirror: Path,
    url_of: Callable[[str], str],
) -> Path:
    """Write the table atomically (tmp + rename), a page of rows at a time, and return
    its path. ``url_of``: a product's download URL from its dataURI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _ecsv(pages, mirror, url_of))
    return path


def _ecsv(
    pages: Iterable[Sequence[ProductRow]], mirror: Path, url_of: Callable[[str], str]
) -> Iterator[bytes]:
    # astropy writes each page (a whole table would hold every row in fixed-width
    # numpy columns: tens of MB for a big program); every page's text starts with the
    # same header, written once.
    header = _table([])
    yield header.encode("utf-8")
    for rows in pages:
        text = _table(rows, mirror, url_of)
        if not text.startswith(header):  # an astropy that writes otherwise
            raise RuntimeError("astropy's ECSV header changed between pages")
        yield text[len(header) :].encode("utf-8")


def _table(
    rows: Sequence[ProductRow],
    mirror: Path | None = None,
    url_of: Callable[[str], str] | None = None,
) -> str:
    from astropy.table import Table

    local, status, message, url = [], [], [], []
    for row in rows:
        assert mirror is not None and url_of is not None
        state, text = _status(row)
        rel = relpath_or_none(row.product)
        local.append("" if rel is None else str(mirror / rel))
        status.append(state)
        message.append(text or "None")
        url.append("None" if state == "COMPLETE" else url_of(row.product.data_uri))
    table = Table(
        [local, status, message, url],
        names=("Local Path", "Status", "Message", "URL"),
        dtype=(str, str, str, str),
    )
    ecsv = io.StringIO()
    table.write(ecsv, format="ascii.ecsv")
    return ecsv.getvalue()
