"""``python -m hstsync``."""

import sys

from hstsync.cli.commands import main

sys.exit(main())
