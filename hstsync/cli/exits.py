"""The exit codes (docs/design.md, "Exit codes"), and the usage error that ends a command
with code 2.

:data:`EXIT_CODES` is the sentence ``--help`` and README give: 0 all present and
verified, 1 not all there yet (failed, needs a token, or still queued/downloading: the
state is named), 2 bad usage or bad configuration (one line on stderr, never a
traceback).
"""

from __future__ import annotations

from hstsync.errors import UsageError

__all__ = ["EXIT_CODES", "EXIT_INCOMPLETE", "EXIT_OK", "EXIT_USAGE", "UsageError"]

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2

EXIT_CODES = (
    "exit codes: 0 every requested product is present and verified; "
    "1 not all there: a product failed or needs a MAST token, a manifest was invalid, "
    "or a request is still queued, resolving or downloading (named on stderr); "
    "2 bad usage or bad configuration (one line on stderr)"
)
