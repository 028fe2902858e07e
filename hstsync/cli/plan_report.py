"""What ``hstsync plan`` prints: the tutorial's columns, the totals, whether it fits.

Owns the plan's table, written batch by batch as the request's observations come (a
big program is never held whole) in columns narrowed to a terminal's width, the
totals with the guide-star and association files counted apart (:class:`Kinds`),
and the verdict on the mirror's free space. Only the totals go through rich, imported
when a plan prints, so ``hstsync status`` never loads it; the services are imported
then too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING

from hstsync.cli.layout import output_width
from hstsync.model import human_bytes
from hstsync.text import printable

if TYPE_CHECKING:
    from rich.console import Console

    from hstsync.service.sync import Plan, PlannedFile


def _console(file: IO[str] | None) -> Console:
    from rich.console import Console

    out = file or sys.stdout
    # Off a terminal (pipes, logs, tests) nothing is wrapped or coloured.
    tty = out.isatty()
    return Console(file=out, width=None if tty else 200, no_color=not tty, highlight=False)


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
