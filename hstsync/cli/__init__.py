"""What people type and read: commands, tables, live progress, the demo, curl scripts.

The console script ``hstsync`` is :func:`hstsync.cli.commands.main` (parse, dispatch,
exit codes). ``parser`` holds every command's arguments and help, ``exits`` the exit
codes (docs/design.md, "Exit codes"); the commands live by group: ``mirroring`` (run,
plan, status, retry), ``manifests`` (add, export-curl), ``token`` (login, logout,
whoami), ``demo``. What they print: ``report`` (tables), ``progress`` (live, on a
terminal), ``curl`` (scripts).
"""

from hstsync.cli.commands import main

__all__ = ["main"]
