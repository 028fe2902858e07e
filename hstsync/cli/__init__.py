"""What people type and read: commands, tables, live progress, the demo, curl scripts.

The console script ``hstsync`` is :func:`hstsync.cli.commands.run`:
:func:`~hstsync.cli.commands.main` (parse, dispatch, exit codes), then a quick exit.
``parser`` holds every command's arguments and help, ``exits`` the exit codes
(docs/design.md, "Exit codes"); the commands live by group: ``mirroring`` (run, plan,
status, retry), ``upkeep`` (verify, prune), ``manifests`` (add, export-curl), ``token``
(login, logout, whoami), ``demo``. What they print: ``report`` (what the commands call:
the status and the one-line summaries; the tables themselves are ``request_table``,
``product_table`` and ``plan_report``, laid out by ``layout``), ``progress`` (live, on a
terminal), ``curl`` (scripts); ``logformat`` makes every log line printable.
"""

from hstsync.cli.commands import main, run

__all__ = ["main", "run"]
