"""What ``hstsync status`` shows: the JSON document of SPEC and the tables people read.

Pure formatting over store rows; the CLI decides where it goes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

from rich import box
from rich.console import Console
from rich.table import Table

from hstsync.model import human_bytes
from hstsync.service.planner import Plan
from hstsync.store.db import ProductRow, RequestSummary


def _console(file: IO[str] | None) -> Console:
    out = file or sys.stdout
    # Off a terminal (pipes, logs, tests) nothing is wrapped or coloured.
    tty = out.isatty()
    return Console(file=out, width=None if tty else 200, no_color=not tty, highlight=False)


def print_status(
    summaries: Sequence[RequestSummary],
    products: Sequence[ProductRow] | None = None,
    *,
    file: IO[str] | None = None,
) -> None:
    console = _console(file)
    if not summaries:
        console.print("no requests yet: drop a manifest into the request directory")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("REQUEST", "STATE", "FILES", "FAILED", "PENDING", "AUTH", "BYTES", "UPDATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("LAST ERROR", overflow="fold")
    for s in summaries:
        c = s.counts
        table.add_row(
            s.request.name,
            str(s.request.state),
            f"{c.done}/{c.total} done",
            str(c.failed),
            str(c.pending),
            str(c.auth_required),
            f"{human_bytes(s.bytes_done)} / {human_bytes(s.bytes_total)}",
            s.request.updated,
            s.request.last_error or "",
        )
    console.print(table)
    if products is None:
        return
    # One line per product, laid out by hand: rich lays out every cell of every row
    # and took seconds for a request of 20,000 products.
    header = ("OBS_ID", "FILE", "SIZE", "STATE", "DONE", "ATTEMPTS", "LAST ERROR")
    lines = [
        (
            row.product.obs_id,
            row.product.filename,
            human_bytes(row.product.size) if row.product.size is not None else "?",
            str(row.state),
            human_bytes(row.bytes_done),
            str(row.attempts),
            " ".join((row.last_error or "").split()),
        )
        for row in products
    ]
    out = file or sys.stdout
    out.write(plain_table(header, lines))


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the last one left ragged."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, cells[-1]]).rstrip() + "\n"

    rule = "  ".join("-" * w for w in widths[:-1]) + "  " + "-" * len(header[-1])
    return "\n" + line(header) + rule + "\n" + "".join(line(r) for r in rows)


def print_plan(name: str, plan: Plan, *, file: IO[str] | None = None) -> None:
    """``hstsync plan``: the tutorial's columns, what is mirrored, and whether it fits."""
    console = _console(file)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("obs_id", "productFilename", "productType", "calib_level", "size", "mirror"):
        table.add_column(column, no_wrap=True)
    for f in plan.files:
        p = f.product
        if f.refused:
            where = f"refused: {f.refused}"
        elif f.present:
            where = "present"
        elif f.on_disk:
            where = f"partial ({human_bytes(f.on_disk)})"
        else:
            where = "to fetch"
        table.add_row(
            p.obs_id,
            p.filename,
            p.product_type,
            "" if p.calib_level is None else str(p.calib_level),
            str(p.size),
            where,
        )
    console.print(table)
    console.print(
        f"{name}: {len(plan.files)} products, {human_bytes(plan.total)}; "
        f"{plan.present} already mirrored; {plan.to_fetch} to fetch, "
        f"{human_bytes(plan.missing_bytes)}"
    )
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    console.print(f"free on the mirror's filesystem: {human_bytes(plan.free)} — {verdict}")
