"""The log's one line per event, whatever the event's text holds.

Messages carry archive text, server answers and file names: an escape sequence in one
would act on the terminal or journal viewer showing it, and a newline would forge a
line of its own. :class:`PrintableFormatter` writes each record's line through
:func:`hstsync.text.printable`; a traceback that follows keeps its own lines.
"""

from __future__ import annotations

import logging

from hstsync.text import printable


class PrintableFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose line (time, level, logger, message) is made
    printable; ``exc_info`` and ``stack_info`` are appended after, as logging does."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))
