"""``python -m hstsync.emulator``."""

import sys

from hstsync.emulator.cli import main

sys.exit(main())
