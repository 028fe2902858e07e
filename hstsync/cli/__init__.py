"""What people type and read: commands, tables, live progress, the demo, curl scripts.

The console script ``hstsync`` is :func:`hstsync.cli.commands.main`.
"""

from hstsync.cli.commands import main

__all__ = ["main"]
