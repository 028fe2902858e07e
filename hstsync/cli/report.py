"""What ``hstsync status`` shows: the JSON document and the tables people read.

The document is docs/design.md, "The status document".

Pure formatting over store rows; the CLI decides where it goes. The status tables are
laid out by hand; only ``plan``'s table uses rich, imported when it prints, so
``hstsync status`` never loads it. Every cell and note is archive or file-system text
made printable (:func:`hstsync.text.printable`): an escape sequence in an error never
acts on the terminal, and a newline never starts a line of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING

from hstsync.model import ProductState, collection_label, human_bytes
from hstsync.text import printable

if TYPE_CHECKING:
    from rich.console import Console

    from hstsync.service.sync import Plan, PlannedFile
    from hstsync.store import Facts, ProductRow, RequestRow, RequestSummary


def _console(file: IO[str] | None) -> Console:
    from rich.console import Console

    out = file or sys.stdout
    # Off a terminal (pipes, logs, tests) nothing is wrapped or coloured.
    tty = out.isatty()
    return Console(file=out, width=None if tty else 200, no_color=not tty, highlight=False)


def output_width(out: IO[str]) -> int | None:
    """The columns to lay text out in: the terminal's, ``$COLUMNS``, or None (no limit:
    a pipe or a file gets one line per request, for grep and awk)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if out.isatty():
        return shutil.get_terminal_size().columns
    return None


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


def _pad(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))


def _one_line_per_request(
    header: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[str]], room: int | None
) -> str:
    indent = " " * (sum(widths[:-1]) + 2 * (len(widths) - 1))
    out = [_pad(header[:-1], widths[:-1]) + "  " + header[-1]]
    out.append(_pad(["-" * w for w in widths[:-1]], widths[:-1]) + "  " + "-" * len(header[-1]))
    for row in rows:
        error = row[-1]
        pieces = textwrap.wrap(error, room, break_on_hyphens=False) if room and error else [error]
        out.append((_pad(row[:-1], widths[:-1]) + "  " + pieces[0]).rstrip())
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
    out = [_pad(header, keep).rstrip(), _pad(["-" * w for w in keep], keep)]
    for row in rows:
        out.append(_pad([row[i] for i in NARROW], keep).rstrip())
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


def print_status(
    summaries: Sequence[RequestSummary],
    products: Sequence[ProductRow] | None = None,
    *,
    file: IO[str] | None = None,
    width: int | None = None,
) -> None:
    out = file or sys.stdout
    if not summaries:
        out.write("no requests yet: drop a manifest into the request directory\n")
        return
    out.write(status_table(summaries, width if width is not None else output_width(out)))
    if products is None:
        return
    out.write(product_table(products, width if width is not None else output_width(out)))


def upkeep_lines(
    attic: tuple[int, int] | None, orphans: Sequence[tuple[str, int]], keep: float
) -> list[str]:
    """What the mirror keeps beyond the requests' files: the attic and the orphans."""
    lines = []
    if attic is not None and attic[0]:
        days = f"kept {keep / 86400:g} days" if keep else "kept until removed"
        lines.append(f"attic: {attic[0]} replaced version(s), {human_bytes(attic[1])} ({days})")
    if orphans:
        size = human_bytes(sum(n for _, n in orphans))
        lines.append(
            f"orphans: {len(orphans)} file(s), {size}, of requests since removed that no "
            "request lists (`hstsync prune` moves them to the attic)"
        )
    return lines


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
    out = ["", _pad(header, widths).rstrip(), _pad(["-" * w for w in widths], widths)]
    for cells, row in rows:
        notes = _product_notes(row)
        line = _pad(cells, widths).rstrip()
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


def pass_lines(summaries: Sequence[RequestSummary]) -> list[str]:
    """Where each request stands after ``run --once`` on a terminal, a line each: its
    live bars are gone by then, and its log lines below warnings were not shown."""
    lines = []
    for s in summaries:
        c = s.counts
        line = (
            f"{s.request.name}: {s.request.state}, {c.done}/{c.total} files, "
            f"{human_bytes(s.bytes_done)} / {human_bytes(s.bytes_total)}"
        )
        if s.request.last_error:
            line += f"; {' '.join(s.request.last_error.split())}"
        lines.append(printable(line))
    return lines


def daemon_line(running: bool, pid: int | None, heartbeat: float | None, now: float) -> str:
    """Whether an ``hstsync run`` is mirroring with this database, from its run lock."""
    if not running:
        return "\ndaemon: not running (no `hstsync run` holds this database)"
    who = f"pid {pid}" if pid is not None else "pid unknown"
    seen = f", last heartbeat {max(now - heartbeat, 0):.0f} s ago" if heartbeat else ""
    return f"\ndaemon: running ({who}{seen})"


def token_line(facts: Facts) -> str | None:
    """How the archive last judged the MAST token (None: never asked)."""
    if facts.token_state is None:
        return None
    if facts.token_state == "none":
        return "MAST token: none (public data only)"
    checked = f" (checked {facts.token_checked})" if facts.token_checked else ""
    if facts.token_state == "accepted":  # its message says so: "accepted for alice"
        return f"MAST token: {facts.token_message or 'accepted'}{checked}"
    return f"MAST token: {facts.token_state}: {facts.token_message or ''}{checked}"


def print_plan(
    name: str,
    plans: Iterable[Plan],
    *,
    unwritable: str | None = None,
    file: IO[str] | None = None,
    collection: str = "HST",
) -> bool:
    """``hstsync plan``: the tutorial's columns, what is mirrored, and whether it fits.

    ``plans``: the request's batches of observations, each printed as it comes (a big
    program is never held whole); the totals follow, with the guide-star and
    association files among them counted apart (:class:`Kinds`). True when it all fits.

    One table to the eye: batches after the first go on without a header, in columns
    never narrower than any batch before. Written as plain lines (rich laid a table
    out at about 0.4 ms a row: most of the command's time for a program of 100,000
    products), cut to the terminal's width on a terminal as ``status`` is, whole in a
    pipe.
    """
    from rich.markup import escape

    from hstsync.service.sync import room_for

    out = file or sys.stdout
    width = output_width(out)
    widths = [len(column) for column in PLAN_COLUMNS]
    products = total = present = to_fetch = missing = 0
    kinds = Kinds()
    free: int | None = None
    for index, plan in enumerate(plans):
        kinds.count(plan)
        rows = [tuple(map(printable, _plan_cells(f))) for f in plan.files]
        for cells in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        shown = _fit(widths, width)
        lines = [_plan_line(cells, shown) for cells in rows]
        if index == 0:
            rule = ["-" * w for w in shown]
            lines[:0] = ["", _plan_line(PLAN_COLUMNS, shown), _plan_line(rule, shown)]
        if lines:
            out.write("\n".join(lines) + "\n")
        products += len(plan.files)
        total += plan.total
        present += plan.present
        to_fetch += plan.to_fetch
        missing += plan.missing_bytes
        free = plan.free if free is None else min(free, plan.free)
    console = _console(file)
    console.print()
    free = free or 0
    # HST, the default, goes without saying
    named = printable(name) if collection == "HST" else f"{printable(name)} ({collection})"
    console.print(
        f"{escape(named)}: {products} products, {human_bytes(total)}; "
        f"{present} already mirrored; {to_fetch} to fetch, "
        f"{human_bytes(missing)}"
    )
    for line in kinds.lines():
        console.print(line)
    fits = room_for(missing, free)
    verdict = "fits" if fits else "DOES NOT FIT"
    if unwritable is not None:
        verdict = f"CANNOT BE WRITTEN: {escape(printable(unwritable))}"
    console.print(f"free on the mirror's filesystem: {human_bytes(free)} — {verdict}")
    return fits


class Kinds:
    """The guide-star and association files among a plan's products (JWST), counted
    apart so that people see what they cost: guide-star files are often ten times as
    many as the science files."""

    def __init__(self) -> None:
        #: kind -> [files, bytes, files to fetch, bytes to fetch]
        self.seen: dict[str, list[int]] = {"guide-star": [0, 0, 0, 0], "association": [0, 0, 0, 0]}

    def count(self, plan: Plan) -> None:
        from hstsync.archive import is_association, is_guide_star
        from hstsync.service.sync import Action

        for f in plan.files:
            kind = (
                "guide-star"
                if is_guide_star(f.product)
                else "association"
                if is_association(f.product)
                else None
            )
            if kind is None or f.refused:
                continue
            size = f.product.size or 0
            tally = self.seen[kind]
            tally[0] += 1
            tally[1] += size
            if f.action is Action.FETCH:
                tally[2] += 1
                tally[3] += f.missing

    def lines(self) -> list[str]:
        """``  of which 16 guide-star files, 92.16 kB (16 to fetch, 92.16 kB)``, a line
        for each kind there is."""
        return [
            f"  of which {files} {kind} file{'s' if files != 1 else ''}, {human_bytes(size)} "
            f"({fetch} to fetch, {human_bytes(missing)})"
            for kind, (files, size, fetch, missing) in self.seen.items()
            if files
        ]


PLAN_COLUMNS = ("obs_id", "productFilename", "productType", "calib_level", "size", "mirror")
#: how a narrow terminal narrows the plan's columns, in turn: (column, down to); the
#: obs_id first (a file's name repeats it), the file's name and its state last
_CUTS = ((0, 9), (2, 9), (1, 20), (5, 12), (0, 4), (1, 8))


def _fit(widths: Sequence[int], width: int | None) -> list[int]:
    """The column widths, narrowed (:data:`_CUTS`) until a line fits in ``width``
    columns, or as they are when there is no limit."""
    shown = list(widths)
    if width is None:
        return shown
    excess = sum(shown) + 2 * (len(shown) - 1) - width
    for column, narrowest in _CUTS:
        cut = min(max(shown[column] - narrowest, 0), max(excess, 0))
        shown[column] -= cut
        excess -= cut
    return shown


def _plan_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    fitted = (c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(cells, widths, strict=True))
    return "  ".join(c.ljust(w) for c, w in zip(fitted, widths, strict=True)).rstrip()


def _plan_cells(f: PlannedFile) -> tuple[str, ...]:
    p = f.product
    if f.refused:
        where = f"refused: {f.refused.removeprefix('refused: ')}"
    elif f.present:
        where = "present"
    elif f.on_disk:
        where = f"partial ({human_bytes(f.on_disk)})"
    else:
        where = "to fetch"
    # catalogue text is data: "[...]" must not be taken for rich markup (escaped by caller)
    return (
        p.obs_id,
        p.filename,
        p.product_type,
        "" if p.calib_level is None else str(p.calib_level),
        "--" if p.size is None else str(p.size),  # as astropy prints a masked cell
        where,
    )
