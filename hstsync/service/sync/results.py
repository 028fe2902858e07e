"""Per-request results in the form astroquery's ``download_products`` returns.

A table with ``Local Path``, ``Status``, ``Message`` and ``URL`` columns, written as
ECSV (``astropy.table.Table.read`` loads it), so scripts written around astroquery's
manifest work on hstsync's too. Status uses astroquery's words: COMPLETE, ERROR,
SKIPPED. The table's ``meta`` names the request and its collection
(``{"request": "jw1345", "obs_collection": "JWST"}``).

``<mirror>/results`` is opened without following a link (one planted there would carry
the tables elsewhere) and made with an explicit mode; the temporary file a ``kill -9``
left mid-write is removed at the request's next table (:data:`STALE_SECONDS`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from hstsync.files import atomic_write, open_directory, sweep_temporaries
from hstsync.model import ProductState, relpath_or_none
from hstsync.store import ProductRow

RESULTS_DIR = "results"
#: a temporary table this old is a kill's leftover, not another writer's in flight
STALE_SECONDS = 3600.0


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
    meta: Mapping[str, str] | None = None,
) -> Path:
    """Write the table atomically (tmp + rename), a page of rows at a time, and return
    its path. ``url_of``: a product's download URL from its dataURI; ``meta``: the
    table's. Raises :class:`OSError` ("refused: … is not a directory") when ``results``
    is a link."""
    mirror_fd = os.open(path.parent.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_directory(path.parent.name, dir_fd=mirror_fd, create=True, label=path.parent)
    finally:
        os.close(mirror_fd)
    try:
        sweep_temporaries(fd, path.name, STALE_SECONDS)
        atomic_write(Path(path.name), _ecsv(pages, mirror, url_of, meta or {}), dir_fd=fd)
    finally:
        os.close(fd)
    return path


def _ecsv(
    pages: Iterable[Sequence[ProductRow]],
    mirror: Path,
    url_of: Callable[[str], str],
    meta: Mapping[str, str],
) -> Iterator[bytes]:
    # A page at a time (a whole table would hold every row in fixed-width numpy
    # columns: tens of MB for a big program). astropy writes the header; the data lines
    # are written here as astropy's writer writes them (ecsv_line), a tenth of its cost
    # on a big program; a page with a NUL in it (numpy's strings drop them) is left
    # to astropy.
    header = ecsv_text([], meta)
    yield header.encode("utf-8")
    for rows in pages:
        cells = [_cells(row, mirror, url_of) for row in rows]
        if any("\x00" in cell for line in cells for cell in line):
            text = ecsv_text(cells, meta)
            if not text.startswith(header):  # an astropy that writes otherwise
                raise RuntimeError("astropy's ECSV header changed between pages")
            yield text[len(header) :].encode("utf-8")
        else:
            yield "".join(ecsv_line(line) for line in cells).encode("utf-8")


COLUMNS = ("Local Path", "Status", "Message", "URL")


def _cells(row: ProductRow, mirror: Path, url_of: Callable[[str], str]) -> tuple[str, ...]:
    state, text = _status(row)
    rel = row.relpath if row.relpath is not None else relpath_or_none(row.product)
    return (
        "" if rel is None else os.path.join(mirror, rel),
        state,
        text or "None",
        "None" if state == "COMPLETE" else url_of(row.product.data_uri),
    )


def ecsv_line(cells: Sequence[str]) -> str:
    """One data line as astropy's ECSV writer writes it: each cell stripped of spaces
    and tabs at its ends, quoted (``""`` inside) when empty or holding a space, a quote
    or a line break."""
    out = []
    for cell in cells:
        cell = cell.strip(" \t")
        if not cell:
            out.append('""')
        elif " " in cell or '"' in cell or "\n" in cell or "\r" in cell:
            out.append('"' + cell.replace('"', '""') + '"')
        else:
            out.append(cell)
    return " ".join(out) + "\n"


def ecsv_text(lines: Sequence[Sequence[str]], meta: Mapping[str, str] | None = None) -> str:
    """The whole ECSV text astropy writes for these data lines (and the header, with
    the table's ``meta``)."""
    from astropy.table import Table

    columns: list[list[str]] = [list(column) for column in zip(*lines, strict=True)]
    table = Table(
        columns or [[] for _ in COLUMNS],
        names=COLUMNS,
        dtype=tuple(str for _ in COLUMNS),
        meta=dict(meta or {}),
    )
    ecsv = io.StringIO()
    table.write(ecsv, format="ascii.ecsv")
    return ecsv.getvalue()
