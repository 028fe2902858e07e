"""How the CLI's text tables are laid out: the width to fit and the padded columns.

Owns what every hand-laid table shares (:mod:`hstsync.cli.request_table`,
:mod:`hstsync.cli.product_table`, :mod:`hstsync.cli.plan_report`): how many columns
the output has (a terminal's, ``$COLUMNS``, or no limit in a pipe, so grep and awk get
one line per row) and how cells are padded into columns two spaces apart.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import IO


def output_width(out: IO[str]) -> int | None:
    """The columns to lay text out in: the terminal's, ``$COLUMNS``, or None (no limit:
    a pipe or a file gets one line per request, for grep and awk)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if out.isatty():
        return shutil.get_terminal_size().columns
    return None


def pad(cells: Sequence[str], widths: Sequence[int]) -> str:
    """``cells`` left-justified to ``widths``, two spaces apart."""
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
