"""What ``hstsync status`` shows people: the tables and the lines around them.

The JSON document ``status --json`` prints instead is docs/design.md, "The status
document".

Pure formatting over store rows; the CLI decides where it goes. This module is what
the commands import: :func:`print_status` writes the per-request table
(:mod:`hstsync.cli.request_table`) and, for one request, its product table
(:mod:`hstsync.cli.product_table`), both laid out by hand
(:mod:`hstsync.cli.layout`); the one-line summaries (the daemon, the token, the
attic and orphans, where each request stands after ``run --once``) are here;
``plan``'s output is :mod:`hstsync.cli.plan_report`, the only one to use rich,
imported when it prints, so ``hstsync status`` never loads it. Every cell and note is
archive or file-system text made printable (:func:`hstsync.text.printable`): an
escape sequence in an error never acts on the terminal, and a newline never starts a
line of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from hstsync.cli.layout import output_width
from hstsync.cli.plan_report import print_plan
from hstsync.cli.product_table import product_table
from hstsync.cli.request_table import status_table
from hstsync.model import human_bytes
from hstsync.text import printable

if TYPE_CHECKING:
    from hstsync.store import Facts, ProductRow, RequestSummary

__all__ = [
    "daemon_line",
    "output_width",
    "pass_lines",
    "print_plan",
    "print_status",
    "product_table",
    "status_table",
    "token_line",
    "upkeep_lines",
]


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
