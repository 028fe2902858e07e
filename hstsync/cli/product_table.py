"""The product table ``hstsync status REQUEST`` prints beneath the request's line.

Owns one line per product (state, bytes, attempts, file) and the notes a person
should know about it (a size the server corrected, an error, an obs_id its file name
does not start with): beneath the line on a terminal, wrapped and never cut; at the
line's end into a pipe, so grep finds them with it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hstsync.cli.layout import pad
from hstsync.model import ProductState, human_bytes
from hstsync.text import printable

if TYPE_CHECKING:
    from hstsync.store import ProductRow


def _product_notes(row: ProductRow) -> list[str]:
    """What a person should know about one product beyond its state and size."""
    p = row.product
    notes = []
    if p.obs_id and not p.filename.lower().startswith(p.obs_id.lower()):
        notes.append(f"in {p.obs_id}/")
    if row.size_note:
        notes.append(f"size: {row.size_note}")
    elif row.catalogue_size is None:
        sent = (
            f", the server sent {p.size:,} bytes"
            if row.state is ProductState.DONE and p.size is not None
            else ""
        )
        notes.append(f"size: the catalogue gives none{sent}")
    if row.last_error:
        label = "last re-sync" if row.state is ProductState.DONE else "last error"
        notes.append(f"{label}: {' '.join(row.last_error.split())}")
    return [printable(note) for note in notes]


def product_table(products: Sequence[ProductRow], width: int | None) -> str:
    """One line per product (state, bytes, attempts, file), laid out by hand: rich lays
    out every cell of every row and took seconds for a request of 20,000 products.

    Notes (a size the server corrected, an error, an obs_id its file name does not
    start with) go on indented lines beneath on a terminal, wrapped to its width and
    never cut; into a pipe they end the product's line, so grep finds them with it.
    """
    header = ("STATE", "BYTES", "TRIES", "FILE")
    rows = []
    for row in products:
        size = row.product.size
        if row.state is ProductState.DONE:
            held = human_bytes(size if size is not None else row.bytes_done)
        else:
            held = (
                f"{human_bytes(row.bytes_done)} / {human_bytes(size) if size is not None else '?'}"
            )
        rows.append(
            ((str(row.state), held, str(row.attempts), printable(row.product.filename)), row)
        )
    widths = [max([len(h), *(len(r[i]) for r, _ in rows)]) for i, h in enumerate(header)]
    out = ["", pad(header, widths).rstrip(), pad(["-" * w for w in widths], widths)]
    for cells, row in rows:
        notes = _product_notes(row)
        line = pad(cells, widths).rstrip()
        if width is None:
            out.append("  ".join([line, *notes]))
            continue
        out.append(line)
        for note in notes:
            out += textwrap.wrap(
                note,
                width,
                initial_indent="    ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
    return "\n".join(out) + "\n"
