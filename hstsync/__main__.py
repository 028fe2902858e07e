"""``python -m hstsync``."""

from hstsync.cli import run

run()
