"""The per-request table ``hstsync status`` prints: one request a line, or stacked.

Owns the request table's columns and how it fits a width: every column on the
request's line with its last error wrapped beneath (a pipe: never wrapped), or on a
narrow terminal the name, state, files and bytes on the line and the rest on indented
lines beneath it. Names and states are never cut; every cell is made printable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hstsync.cli.layout import pad
from hstsync.model import collection_label, human_bytes
from hstsync.text import printable

if TYPE_CHECKING:
    from hstsync.store import RequestRow, RequestSummary


#: the columns every request line has; UPDATED, MIRRORED (when the request was last
#: fully mirrored), NEW FILES and LAST ERROR follow on the same line when they fit,
#: else on lines of their own beneath it. COLLECTION is HST or JWST, with the
#: observations planned, not yet executed, when there are any ("JWST, 1 planned")
MAIN = ("REQUEST", "STATE", "FILES", "FAILED", "PENDING", "AUTH", "BYTES", "COLLECTION")
EXTRA = ("UPDATED", "MIRRORED", "NEW FILES", "LAST ERROR")
#: narrowest LAST ERROR column worth keeping on the request's line
MIN_ERROR = 30


def status_table(summaries: Sequence[RequestSummary], width: int | None) -> str:
    """The per-request table, readable at 80 columns: names and states are never cut,
    and an error that does not fit wraps onto its own indented lines."""
    rows: list[tuple[str, ...]] = []
    for s in summaries:
        c = s.counts
        cells = (
            s.request.name,
            str(s.request.state),
            f"{c.done}/{c.total} done" + (f", {c.withdrawn} withdrawn" if c.withdrawn else ""),
            str(c.failed),
            str(c.pending),
            str(c.auth_required),
            f"{human_bytes(s.bytes_done)} / {human_bytes(s.bytes_total)}",
            collection_label(s.request.collection, s.request.planned),
            s.request.updated,
            s.request.mirrored_at or "never",
            s.request.last_new_files or "-",
            " ".join(_error_of(s.request).split()),
        )
        rows.append(tuple(printable(cell) for cell in cells))
    header = (*MAIN, *EXTRA)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    inline = sum(widths[:-1]) + 2 * (len(header) - 1)
    if width is None or width - inline >= MIN_ERROR:
        room = None if width is None else width - inline
        return _one_line_per_request(header, widths, rows, room)
    return _stacked(widths, rows, width)


def _error_of(row: RequestRow) -> str:
    """The request's last error, with when a failed lookup is tried again."""
    error = row.last_error or ""
    if row.next_lookup and row.state not in _RUNNING:
        error += f" (looked up again at {row.next_lookup})"
    return error


#: states of a request whose pass is under way (its error says what it waits for)
_RUNNING = frozenset({"queued", "resolving", "downloading"})


def _one_line_per_request(
    header: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[str]], room: int | None
) -> str:
    indent = " " * (sum(widths[:-1]) + 2 * (len(widths) - 1))
    out = [pad(header[:-1], widths[:-1]) + "  " + header[-1]]
    out.append(pad(["-" * w for w in widths[:-1]], widths[:-1]) + "  " + "-" * len(header[-1]))
    for row in rows:
        error = row[-1]
        pieces = textwrap.wrap(error, room, break_on_hyphens=False) if room and error else [error]
        out.append((pad(row[:-1], widths[:-1]) + "  " + pieces[0]).rstrip())
        out += [indent + piece for piece in pieces[1:]]
    return "\n".join(out) + "\n"


#: the columns kept on the request's line when the full one does not fit
NARROW = (0, 1, 2, 6)  # REQUEST, STATE, FILES, BYTES


def _stacked(widths: Sequence[int], rows: Sequence[Sequence[str]], width: int) -> str:
    """Narrow terminals: name, state, files and bytes on the request's line; the
    collection, counts, times and the error (wrapped, never cut) on indented lines
    beneath it."""
    keep = [widths[i] for i in NARROW]
    header = [MAIN[i] for i in NARROW]
    out = [pad(header, keep).rstrip(), pad(["-" * w for w in keep], keep)]
    for row in rows:
        out.append(pad([row[i] for i in NARROW], keep).rstrip())
        counts = f"{row[7]}; {row[3]} failed, {row[4]} pending, {row[5]} need a token"
        out += textwrap.wrap(
            f"{counts}; updated {row[8]}; mirrored {row[9]}; new files {row[10]}",
            width,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        if row[-1]:
            out += textwrap.wrap(
                f"last error: {row[-1]}",
                width,
                initial_indent="  ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
    return "\n".join(out) + "\n"
